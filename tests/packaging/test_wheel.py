"""The built wheel works outside the repository: installed into a fresh venv and run from a
temp directory, the Quick Start, ``openenv serve``, ``openenv bench`` and ``openenv build`` work
with no checkout in sight."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TAG = "echo-env:wheel-test"

pytestmark = pytest.mark.timeout(900)


@dataclass(frozen=True)
class Installed:
    venv: Path
    workdir: Path  # outside the repository
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    @property
    def openenv(self) -> str:
        return str(self.venv / "bin" / "openenv")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The project's wheel, built and installed (with its server, docker and bench extras)
    into a fresh venv; pip's cache keeps repeated runs fast."""
    root = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools leaves build/ in the source tree, and a stale build/lib
    # would put files deleted since into the wheel.
    source = root / "source"
    for name in ("openenv", "envs"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    dist = root / "dist"
    quiet = {"capture_output": True, "text": True, "timeout": 600}
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
        **quiet,  # type: ignore[call-overload]
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("openenv_rl-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", f"{wheel}[server,docker,bench]"],
        **quiet,  # type: ignore[call-overload]
    )
    assert done.returncode == 0, done.stderr
    workdir = root / "elsewhere"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    yield Installed(venv, workdir, env)


def test_the_package_comes_from_the_wheel_not_the_checkout(installed: Installed) -> None:
    done = installed.run(installed.python, "-c", "import openenv, envs; print(openenv.__file__)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(str(installed.venv)), done.stdout


def test_quick_start_without_docker(installed: Installed) -> None:
    script = textwrap.dedent(
        """
        from envs.echo_env import EchoAction, EchoEnv

        with EchoEnv.from_process() as client:
            print(client.reset().observation.echoed_message)
            result = client.step(EchoAction(message="Hello, World!"))
            print(result.observation.echoed_message, result.reward)
        """
    )
    done = installed.run(installed.python, "-c", script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["Echo environment ready!", "Hello, World! 1.3"]


def test_serve_by_name_and_ctrl_c(installed: Installed) -> None:
    server = subprocess.Popen(
        [installed.openenv, "serve", "echo", "--port", "0"],
        cwd=installed.workdir,
        env=installed.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith("openenv: serving on ws://127.0.0.1:")
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=30)
        assert (server.returncode, stderr) == (130, "")
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()


def test_bench(installed: Installed) -> None:
    done = installed.run(installed.openenv, "bench", "--sessions", "2", "--steps", "50")
    assert done.returncode == 0, done.stderr
    assert "steps/s" in done.stdout


@pytest.mark.usefixtures("docker_images")
def test_build_and_quick_start_in_docker(installed: Installed) -> None:
    labelled = ["docker", "images", "-q", "--filter", "label=openenv.build"]
    before = set(subprocess.run(labelled, capture_output=True, text=True).stdout.split())
    try:
        done = installed.run(installed.openenv, "build", "echo", "--tag", TAG, timeout=600)
        assert done.returncode == 0, done.stderr
        assert f"built {TAG}" in done.stdout
        after = set(subprocess.run(labelled, capture_output=True, text=True).stdout.split())
        assert after - before == set(), "the build left its install stage image behind"
        script = textwrap.dedent(
            f"""
            from envs.echo_env import EchoAction, EchoEnv

            client = EchoEnv.from_docker_image("{TAG}")
            print(client.reset().observation.echoed_message)
            print(client.step(EchoAction(message="Hello, World!")).reward)
            client.close()
            """
        )
        done = installed.run(installed.python, "-c", script)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ["Echo environment ready!", "1.3"]
    finally:
        subprocess.run(["docker", "rmi", "-f", TAG], capture_output=True, timeout=60)
