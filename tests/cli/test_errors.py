"""Every expected failure of the ``openenv`` command is one line on stderr and a documented
exit code; Ctrl-C exits quietly with 130; ``serve --uds`` cleans up after itself."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

OPENENV = [sys.executable, "-m", "openenv"]


def openenv(*args: str, cwd: str | Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OPENENV, *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what nohup and `cmd &` in a script do


@contextmanager
def serving(*args: str, sigint_ignored: bool = False) -> Iterator[subprocess.Popen[str]]:
    """``openenv serve`` in a subprocess, waited for until it announces its address."""
    process = subprocess.Popen(
        [*OPENENV, "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ignore_sigint if sigint_ignored else None,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until it serves (or dies: then "")
        assert line.startswith("openenv: serving on "), process.communicate(timeout=10)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def test_help_documents_the_exit_codes() -> None:
    done = openenv("--help")
    assert done.returncode == 0
    for code in ("0 ", "1 ", "2 ", "130"):
        assert f"  {code}" in done.stdout


def test_serving_an_unknown_env_is_one_line_and_exit_2() -> None:
    done = openenv("serve", "envs.nope")
    assert done.returncode == 2
    assert one_line(done.stderr).startswith(
        "openenv serve: no env 'envs.nope': no module named 'envs.nope'"
    )


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["", "started-with-sigint-ignored"])
def test_serving_by_registered_name_works_and_ctrl_c_exits_quietly_with_130(
    sigint_ignored: bool,
) -> None:
    with serving("echo", "--port", "0", sigint_ignored=sigint_ignored) as server:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=20)
        assert server.returncode == 130
        assert stderr == ""


def test_a_port_in_use_is_one_line_and_exit_1() -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        done = openenv("serve", "envs.echo_env", "--port", str(port))
    assert done.returncode == 1
    assert one_line(done.stderr) == (
        f"openenv serve: cannot listen on 127.0.0.1:{port}: the address is in use "
        "(another server?); pick another --port, or --port 0 for any free one"
    )


def test_a_unix_socket_is_removed_on_exit_refused_when_live_replaced_when_stale(
    tmp_uds: str,
) -> None:
    with serving("echo", "--uds", tmp_uds) as first:
        assert os.path.exists(tmp_uds)
        second = openenv("serve", "echo", "--uds", tmp_uds)
        assert second.returncode == 1
        assert one_line(second.stderr) == (
            f"openenv serve: cannot listen on {tmp_uds}: another server answers there; "
            "stop it or pick another --uds"
        )
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=20)
    assert not os.path.exists(tmp_uds), "the socket file outlived its server"

    stale = socket.socket(socket.AF_UNIX)  # bound, never listening: what a killed server leaves
    stale.bind(tmp_uds)
    stale.close()
    with serving("echo", "--uds", tmp_uds) as server:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=20)
        assert server.returncode == 130
    assert not os.path.exists(tmp_uds)


def test_a_unix_socket_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "not-a-socket"
    path.write_text("keep me")
    done = openenv("serve", "echo", "--uds", str(path))
    assert done.returncode == 1
    assert one_line(done.stderr).endswith("it exists and is not a socket")
    assert path.read_text() == "keep me"


def test_serve_logs_sessions_at_info_and_never_the_token(tmp_uds: str) -> None:
    from envs.echo_env import EchoAction, EchoEnv

    token = "s3cret-token-value"
    env = {**os.environ, "OPENENV_TOKEN": token}
    process = subprocess.Popen(
        [*OPENENV, "serve", "echo", "--uds", tmp_uds, "--log-level", "info"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("openenv: serving on")
        with EchoEnv(f"unix://{tmp_uds}", token=token) as client:
            client.reset()
            client.step(EchoAction(message="hi"))
        with pytest.raises(Exception, match="token"):
            EchoEnv(f"unix://{tmp_uds}", token="bad-tok-42").reset()
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert "session" in stderr and "opened" in stderr and "closed (0 active)" in stderr
    assert "refused a session" in stderr
    assert token not in stderr and "bad-tok-42" not in stderr


def test_build_of_a_missing_env_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = openenv("build", "envs/nope", cwd=tmp_path)
    assert done.returncode == 2
    assert one_line(done.stderr).startswith("openenv build: no env 'envs/nope'")


def test_no_docker_daemon_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    done = subprocess.run([*OPENENV, "ps"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1
    assert one_line(done.stderr).startswith(
        "openenv ps: cannot list containers: no Docker daemon answers"
    )


@pytest.mark.usefixtures("docker_images")
def test_a_base_image_that_cannot_be_had_gets_the_make_base_image_hint(tmp_path: Path) -> None:
    done = openenv(
        "build", "echo", "--tag", "echo-env:never", "--base-image", "openenv-no-such-base:nope",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    line = done.stderr.strip().splitlines()[-1]  # after the progress lines
    assert line.startswith(
        "openenv build: building echo-env:never failed: the base image "
        "openenv-no-such-base:nope is not on this machine and could not be pulled"
    )
    assert "`make base-image`" in line and "--base-image openenv-base:bookworm" in line


@pytest.mark.parametrize(
    ("args", "module", "extra"),
    [
        (["ps", "--ray"], "ray", "ray"),
        (["prune", "--ray"], "ray", "ray"),
        (["bench", "--compare", "--steps", "1"], "aiohttp", "bench"),
        (["bench", "--compare", "--steps", "1"], "httptools", "bench"),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(args: list[str], module: str, extra: str) -> None:
    # The module is made unimportable in the child, as where its extra is not installed.
    code = (
        f"import sys; sys.modules[{module!r}] = None\nfrom openenv.cli import main; main({args!r})"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert one_line(done.stderr) == (
        f"openenv {args[0]}: {module} is not installed: pip install 'openenv-rl[{extra}]'"
    )
