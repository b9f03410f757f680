"""LocalDockerProvider with real containers on a real daemon (skipped loudly without one)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap

import aiodocker
import pytest

from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv import AuthenticationError, ConnectionLostError, ProviderError
from openenv.launch import open_client
from openenv.providers.docker import LocalDockerProvider, parse_bytes
from openenv.providers.housekeeping import list_managed, prune
from openenv.providers.owners import prune_folders

pytestmark = pytest.mark.usefixtures("docker_images")

IMAGE = "echo-env:latest"

QUICK_START = """
from envs.echo_env import EchoAction, EchoEnv
client = EchoEnv.from_docker_image("echo-env:latest")
result = client.reset()
print(result.observation.echoed_message)
result = client.step(EchoAction(message="Hello, World!"))
print(result.observation.echoed_message)
print(result.reward)
client.close()
"""


def managed_ids(owner_pid: int) -> set[str]:
    """Managed containers of one owner process (other programs may share the daemon)."""
    label = f"label=openenv.owner_pid={owner_pid}"
    done = subprocess.run(
        ["docker", "ps", "-aq", "--no-trunc", "--filter", label],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return set(done.stdout.split())


def test_the_readme_quick_start_runs_verbatim_and_leaves_nothing() -> None:
    script = subprocess.Popen(
        [sys.executable, "-c", QUICK_START], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stdout, stderr = script.communicate(timeout=60)
    assert script.returncode == 0, stderr.decode()
    assert stdout.decode() == "Echo environment ready!\nHello, World!\n1.3\n"
    assert managed_ids(script.pid) == set()


async def test_unix_socket_container_is_sandboxed_and_labelled() -> None:
    async with LocalDockerProvider(IMAGE, memory="256m", pids=64, cpus=0.5) as provider:
        server = await provider.start()
        assert server.endpoint.unix_socket is not None and server.endpoint.token
        async with AsyncEchoEnv(server.endpoint) as env:
            await env.reset()
            assert (await env.step(EchoAction(message="in a box"))).reward == 0.8
        async with aiodocker.Docker() as docker:
            info = await docker.containers.container(server.id).show()
        host = info["HostConfig"]
        assert info["Config"]["User"] == "65534:65534"
        assert host["NetworkMode"] == "none"
        assert host["CapDrop"] == ["ALL"]
        assert host["SecurityOpt"] == ["no-new-privileges"]
        assert host["ReadonlyRootfs"] is True
        assert "/tmp" in host["Tmpfs"]
        assert (host["Memory"], host["PidsLimit"], host["NanoCpus"]) == (256 << 20, 64, 5 * 10**8)
        labels = info["Config"]["Labels"]
        assert labels["openenv.managed"] == "1"
        assert labels["openenv.owner_pid"] == str(os.getpid())
        assert labels["openenv.pool"] == provider.pool
        with pytest.raises(AuthenticationError):
            await AsyncEchoEnv(server.endpoint.with_token("nope")).connect()
    assert server.id not in managed_ids(os.getpid())


async def test_tcp_transport_publishes_on_loopback_only() -> None:
    async with LocalDockerProvider(IMAGE, transport="tcp") as provider:
        server = await provider.start()
        assert server.endpoint.url.startswith("ws://127.0.0.1:")
        async with aiodocker.Docker() as docker:
            info = await docker.containers.container(server.id).show()
        bindings = info["HostConfig"]["PortBindings"]["8000/tcp"]
        assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]
        async with AsyncEchoEnv(server.endpoint) as env:
            assert (await env.reset()).observation.echoed_message == "Echo environment ready!"


async def test_killed_container_fails_the_next_call_fast_and_leaves_nothing() -> None:
    provider = LocalDockerProvider(IMAGE)
    # No client timeout: only noticing the dead container can end the call after the kill.
    env = await open_client(provider, AsyncEchoEnv, timeout=None)  # as from_docker_image does
    (server,) = provider.running()
    try:
        await env.reset()
        await env.step(EchoAction(message="before"))
        subprocess.run(["docker", "kill", server.id], capture_output=True, timeout=20, check=True)
        with pytest.raises(ConnectionLostError) as caught:
            await env.step(EchoAction(message="after"))
        assert caught.value.code is None  # no close frame: the server died with its container
    finally:
        await env.close()
    assert server.id not in managed_ids(os.getpid())
    assert provider.running() == []


def pool_containers(pool: str) -> list[str]:
    done = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=openenv.pool={pool}"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    return done.stdout.split()


@pytest.mark.parametrize("delay", [0.0, 0.002, 0.005, 0.01, 0.02, 0.05])
async def test_a_start_cancelled_at_any_moment_leaves_no_container(delay: float) -> None:
    # Some of these delays land while the daemon is creating the container: its id is not
    # known yet, and the provider must still remove it once it exists.
    provider = LocalDockerProvider(IMAGE)
    starting = asyncio.create_task(provider.start())
    await asyncio.sleep(delay)
    starting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await starting
    await provider.close()
    for _ in range(600):  # a removal scheduled at the cancellation may still be under way
        if not pool_containers(provider.pool):
            break
        await asyncio.sleep(0.05)
    assert pool_containers(provider.pool) == []
    assert provider.running() == []


async def test_missing_image_is_a_provider_error() -> None:
    async with LocalDockerProvider("openenv-no-such-image:nope") as provider:
        with pytest.raises(ProviderError, match="openenv-no-such-image"):
            await provider.start()


async def test_a_container_that_dies_at_start_up_reports_its_log() -> None:
    provider = LocalDockerProvider(IMAGE, env={"OPENENV_APP": "no_such_env_module"})
    with pytest.raises(ProviderError, match="no module named 'no_such_env_module'"):
        await provider.start()
    await provider.close()
    assert provider.running() == []


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_client_killed_by_a_signal(how: signal.Signals) -> None:
    """SIGINT/SIGTERM leave no container; SIGKILL leaves one that `openenv prune` removes."""
    script = textwrap.dedent(
        """
        import time
        from envs.echo_env import EchoEnv
        env = EchoEnv.from_docker_image("echo-env:latest")
        env.reset()
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    client = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout is not None
        assert client.stdout.readline().strip() == "ready"
        label = f"label=openenv.owner_pid={client.pid}"
        ps = ["docker", "ps", "-aq", "--filter", label]
        assert len(subprocess.run(ps, capture_output=True, text=True).stdout.split()) == 1
        client.send_signal(how)
        client.wait(30)
        left = subprocess.run(ps, capture_output=True, text=True).stdout.split()
        if how == signal.SIGKILL:
            assert len(left) == 1
            rows = {row.id[:12]: row for row in asyncio.run(list_managed())}
            assert rows[left[0]].owner_alive is False
            removed = asyncio.run(prune())
            assert any(r.startswith(left[0]) for r in removed)
            assert prune_folders(), "the bind-mount folder of the killed client was not pruned"
            assert subprocess.run(ps, capture_output=True, text=True).stdout.split() == []
        else:
            assert left == []
    finally:
        client.kill()
        client.wait()


def test_prune_spares_containers_of_live_owners() -> None:
    async def scenario() -> None:
        async with LocalDockerProvider(IMAGE) as provider:
            server = await provider.start()
            removed = await prune()
            assert server.id not in removed
            assert await provider.is_alive(server)

    asyncio.run(scenario())


def test_parse_bytes() -> None:
    assert parse_bytes("512m") == 512 << 20
    assert parse_bytes("1g") == 1 << 30
    assert parse_bytes("64MB") == 64 << 20
    assert parse_bytes(1000) == 1000
