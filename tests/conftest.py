"""Shared fixtures: real echo servers (in process, over TCP port 0, over a unix socket)."""

from __future__ import annotations

import os

# Before anything can import ray: without it, Ray binds the machine's own non-loopback address
# even for a cluster on 127.0.0.1, and these machines allow loopback only.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import asyncio
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from hypothesis import settings

# No per-example deadline: on a loaded 2-core CI box one example can take 300 ms for reasons
# that have nothing to do with the code (hypothesis then reports a flaky failure).
settings.register_profile("openenv", deadline=None)
settings.load_profile("openenv")

# Every temp folder the tests and their subprocesses make goes here, so that the leak check
# below sees exactly ours (other programs on the machine have their own openenv-* folders).
SESSION_TMPDIR = tempfile.mkdtemp(prefix="oe-run-")
os.environ["TMPDIR"] = SESSION_TMPDIR
tempfile.tempdir = None

# Started with SIGINT ignored (nohup, `make test &` in a script), the tests' children would
# inherit that and never see the Ctrl-C some tests press: a handler of ours is reset to the
# default in every child.
signal.signal(signal.SIGINT, signal.default_int_handler)

from envs.echo_env.server.echo_environment import EchoEnvironment  # noqa: E402
from openenv import procfs  # noqa: E402
from openenv.server import ServerConfig, create_app  # noqa: E402
from openenv.server.serve import uvicorn_config  # noqa: E402


@asynccontextmanager
async def running_server(
    app: Any, *, uds: str | None = None, **uvicorn_options: Any
) -> AsyncIterator[str]:
    """Serve ``app`` with real uvicorn, configured as ``openenv serve`` does, in this process on
    127.0.0.1 port 0 or ``uds``; yields the address clients connect to."""
    if uds is None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn_config(app, "127.0.0.1", port, None, **uvicorn_options)
        address = f"ws://127.0.0.1:{port}/ws"
        sockets = [sock]
    else:
        config = uvicorn_config(app, "127.0.0.1", 0, uds, **uvicorn_options)
        address = f"unix://{uds}"
        sockets = None
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=sockets))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    await task
                await asyncio.sleep(0.01)
        yield address
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        if uds is None:
            sock.close()


@pytest.fixture
def echo_app_factory() -> Any:
    def make(**config: Any) -> Any:
        return create_app(EchoEnvironment, config=ServerConfig(**config))

    return make


@pytest.fixture
async def echo_server() -> AsyncIterator[str]:
    """A real echo server over TCP on 127.0.0.1, port 0."""
    async with running_server(create_app(EchoEnvironment, config=ServerConfig())) as address:
        yield address


@pytest.fixture
def tmp_uds() -> Iterator[str]:
    """A unix socket path short enough for the kernel's 108-byte limit."""
    with tempfile.TemporaryDirectory(prefix="oe-") as directory:
        yield os.path.join(directory, "s.sock")


def openenv_children() -> list[str]:
    """Command lines of this process's live children that are env servers."""
    found = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        pid = int(status.parent.name)
        if procfs.parent_pid(pid) != os.getpid() or not procfs.is_running(pid):
            continue
        try:
            cmdline = (status.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "openenv serve" in cmdline:
            found.append(cmdline.strip())
    return found


def docker_problem() -> str | None:
    """Why Docker tests cannot run here, or None when they can."""
    import shutil

    if shutil.which("docker") is None:
        return "no docker CLI"
    done = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20)
    return None if done.returncode == 0 else "no Docker daemon answers"


def containers_labelled(label: str) -> list[str]:
    """Ids of the containers, running or not, carrying ``label`` (``key=value``)."""
    done = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={label}"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return done.stdout.split()


def our_containers() -> list[str]:
    """Managed containers owned by this test process."""
    if docker_problem() is not None:
        return []
    return containers_labelled(f"openenv.owner_pid={os.getpid()}")


#: The env images Docker tests run; a branch that changes an image's content builds its own tag
#: and points the tests at it (e.g. OPENENV_TEST_CODING_IMAGE=coding-env:fork).
ECHO_IMAGE = os.environ.get("OPENENV_TEST_ECHO_IMAGE", "echo-env:latest")
CODING_IMAGE = os.environ.get("OPENENV_TEST_CODING_IMAGE", "coding-env:latest")
TERMINAL_IMAGE = os.environ.get("OPENENV_TEST_TERMINAL_IMAGE", "terminal-env:latest")


@pytest.fixture(scope="session")
def docker_images() -> None:
    """Docker tests need a daemon and the env images: skip loudly without them, or fail when
    OPENENV_REQUIRE_DOCKER=1 (CI) says they must run."""
    problem = docker_problem()
    if problem is None:
        for image in (ECHO_IMAGE, CODING_IMAGE, TERMINAL_IMAGE):
            done = subprocess.run(["docker", "image", "inspect", image], capture_output=True)
            if done.returncode != 0:
                problem = f"image {image} is missing (make images)"
                break
    if problem is None:
        return
    if os.environ.get("OPENENV_REQUIRE_DOCKER") == "1":
        pytest.fail(f"OPENENV_REQUIRE_DOCKER=1 but {problem}")
    pytest.skip(f"DOCKER TESTS SKIPPED: {problem}")


@pytest.fixture(scope="session", autouse=True)
def nothing_leaks() -> Iterator[None]:
    """After the whole run, no env server process, container or provider temp folder started
    by a test may remain."""
    yield
    for _ in range(50):
        if not openenv_children() and not our_containers() and not our_folders():
            break
        time.sleep(0.1)
    folders = our_folders()
    shutil.rmtree(SESSION_TMPDIR, ignore_errors=True)
    assert openenv_children() == [], "env server processes outlived the test run"
    leftovers = our_containers()
    if leftovers:
        subprocess.run(["docker", "rm", "-f", *leftovers], capture_output=True, timeout=60)
    assert leftovers == [], "containers outlived the test run"
    assert folders == [], "provider temp folders outlived the test run"


def our_folders() -> list[str]:
    """Provider temp folders (openenv-*) in this run's TMPDIR."""
    return sorted(str(p) for p in Path(SESSION_TMPDIR).glob("openenv-*"))
