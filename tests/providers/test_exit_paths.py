"""A pool killed by SIGINT, SIGTERM or SIGKILL (+ ``openenv prune``) leaves no server, container
or temp folder behind, and prints nothing spurious."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

POOL_SCRIPT = """
import asyncio
from envs.echo_env import AsyncEchoEnv
from openenv import EnvPool
from openenv.providers import LocalProcessProvider
from openenv.providers.docker import LocalDockerProvider

async def main():
    provider = {provider}
    async with EnvPool(AsyncEchoEnv, provider, size=2) as pool:
        await pool.reset()
        print("ready", flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"""
PROVIDERS = {
    "process": 'LocalProcessProvider("envs.echo_env")',
    "docker": 'LocalDockerProvider("echo-env:latest")',
}


@pytest.fixture
def tmpdir_root() -> Iterator[Path]:
    """A private TMPDIR for the client, short enough for unix socket paths."""
    root = Path(tempfile.mkdtemp(prefix="oe-x-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def start_pool(provider: str, tmpdir: Path) -> subprocess.Popen[str]:
    script = textwrap.dedent(POOL_SCRIPT.format(provider=PROVIDERS[provider]))
    client = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmpdir)},
    )
    assert client.stdout is not None
    line = client.stdout.readline()
    if line.strip() != "ready":
        client.kill()
        pytest.fail(f"the pool did not start: {client.communicate(timeout=10)}")
    return client


def containers_of(pid: int) -> list[str]:
    ps = ["docker", "ps", "-aq", "--filter", f"label=openenv.owner_pid={pid}"]
    return subprocess.run(ps, capture_output=True, text=True, timeout=20).stdout.split()


@pytest.fixture(params=["process", "docker"])
def provider(request: pytest.FixtureRequest) -> str:
    if request.param == "docker":
        request.getfixturevalue("docker_images")
    return str(request.param)


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_leaves_nothing_and_prints_nothing_spurious(
    provider: str, how: signal.Signals, tmpdir_root: Path
) -> None:
    client = start_pool(provider, tmpdir_root)
    try:
        assert list(tmpdir_root.glob("openenv-*")), "the provider made no temp folder?"
        client.send_signal(how)
        _, stderr = client.communicate(timeout=60)
    finally:
        client.kill()
        client.wait()
    assert "never retrieved" not in stderr and "Unknown child" not in stderr, stderr
    if how == signal.SIGTERM:
        assert client.returncode == 143, stderr
        assert stderr == ""
    assert list(tmpdir_root.glob("openenv-*")) == []
    if provider == "docker":
        assert containers_of(client.pid) == []


@pytest.mark.usefixtures("docker_images")
def test_after_sigkill_prune_removes_the_containers_and_their_folders(tmpdir_root: Path) -> None:
    client = start_pool("docker", tmpdir_root)
    client.kill()
    client.communicate(timeout=30)
    assert len(containers_of(client.pid)) == 2
    assert len(list(tmpdir_root.glob("openenv-docker-*"))) == 2
    done = subprocess.run(
        [sys.executable, "-m", "openenv", "prune"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TMPDIR": str(tmpdir_root)},
    )
    assert done.returncode == 0, done.stderr
    assert "removed 2 temp folder(s)" in done.stdout
    assert containers_of(client.pid) == []
    assert list(tmpdir_root.glob("openenv-*")) == []


KILL_SCRIPT = """
import asyncio, os, signal, sys
from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv import BatchError, EnvPool
from openenv.providers import LocalProcessProvider

async def main():
    provider = LocalProcessProvider("envs.echo_env")
    async with EnvPool(AsyncEchoEnv, provider, size=2) as pool:
        await pool.reset()
        os.kill(int(pool.server_of(0).id), signal.SIGKILL)  # from outside the provider
        try:
            await pool.step([EchoAction(message="x")] * 2)
        except BatchError:
            pass
        await pool.reset()
        print("replaced", pool.stats.servers_replaced, flush=True)

if sys.argv[1] == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_killed_server_process_makes_asyncio_print_nothing(loop: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILL_SCRIPT), loop],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "replaced 1"
    assert done.stderr == ""
