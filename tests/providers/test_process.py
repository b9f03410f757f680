"""LocalProcessProvider with real subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv import AuthenticationError, ConnectionLostError, ProviderError, procfs
from openenv.providers import LocalProcessProvider
from openenv.providers.owners import prune_folders


def pid_alive(pid: int) -> bool:
    return procfs.is_running(pid)


@pytest.mark.parametrize("transport", ["unix", "tcp"])
async def test_start_connect_stop(transport: str) -> None:
    async with LocalProcessProvider("envs.echo_env", transport=transport) as provider:  # type: ignore[arg-type]
        server = await provider.start()
        assert server.endpoint.token, "servers get a random token by default"
        if transport == "unix":
            assert server.endpoint.unix_socket is not None
        else:
            assert server.endpoint.url.startswith("ws://127.0.0.1:")
        assert await provider.is_alive(server)
        async with AsyncEchoEnv(server.endpoint) as env:
            assert (await env.reset()).reward == 0.0
        with pytest.raises(AuthenticationError):
            await AsyncEchoEnv(server.endpoint.with_token("guess")).connect()
        pid = int(server.id)
        await provider.stop(server)
        assert not pid_alive(pid)
        assert provider.running() == []


async def test_close_stops_every_server() -> None:
    provider = LocalProcessProvider("envs.echo_env")
    servers = await asyncio.gather(*(provider.start() for _ in range(3)))
    await provider.close()
    assert not any(pid_alive(int(s.id)) for s in servers)


async def test_killed_server_is_detected_and_the_client_fails_fast() -> None:
    async with LocalProcessProvider("envs.echo_env") as provider:
        server = await provider.start()
        async with AsyncEchoEnv(server.endpoint, timeout=None) as env:
            await env.reset()
            await provider.kill(server)
            # No timeout: only noticing the dead peer can end this call.
            with pytest.raises(ConnectionLostError) as caught:
                await env.step(EchoAction(message="x"))
            assert caught.value.code is None  # no close frame: the process died
        # The socket closes as the process exits, a moment before it is gone from /proc.
        for _ in range(1000):
            if not await provider.is_alive(server):
                break
            await asyncio.sleep(0.02)
        assert not await provider.is_alive(server)


async def test_a_server_that_cannot_start_raises_provider_error_with_its_log() -> None:
    provider = LocalProcessProvider("no_such_module_anywhere", startup_timeout=20)
    with pytest.raises(ProviderError, match="no module named 'no_such_module_anywhere'"):
        await provider.start()
    assert provider.running() == []


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_no_orphan_when_the_client_process_dies(how: signal.Signals, tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from envs.echo_env import EchoEnv
        env = EchoEnv.from_process()
        env.reset()
        print(env.endpoint, flush=True)
        time.sleep(60)
        """
    )
    client = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    try:
        assert client.stdout is not None
        client.stdout.readline()
        servers = [
            pid
            for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
            if pid_alive(pid) and _parent(pid) == client.pid
        ]
        assert len(servers) == 1
        client.send_signal(how)
        client.wait(10)
        for _ in range(100):
            if not pid_alive(servers[0]):
                break
            import time

            time.sleep(0.05)
        assert not pid_alive(servers[0]), "the env server outlived its client"
        if how == signal.SIGKILL:  # nothing ran in the client: prune removes its folder
            assert len(folders_of(client.pid)) == 1
            removed = prune_folders()
            assert folders_of(client.pid) == [] and len(removed) >= 1
        else:  # SIGTERM unwound the client, which removed its folder itself
            assert folders_of(client.pid) == []
    finally:
        client.kill()
        client.wait()


def folders_of(pid: int) -> list[Path]:
    """The provider temp folders whose owner file names ``pid``."""
    found = []
    for owner in Path(tempfile.gettempdir()).glob("openenv-*/owner.json"):
        if json.loads(owner.read_text())["openenv.owner_pid"] == str(pid):
            found.append(owner.parent)
    return found


def _parent(pid: int) -> int:
    parent = procfs.parent_pid(pid)
    return -1 if parent is None else parent


async def test_tokens_stay_out_of_reprs_errors_logs_and_the_process_table() -> None:
    async with LocalProcessProvider("envs.echo_env") as provider:
        server = await provider.start()
        token = server.endpoint.token
        assert token
        client = AsyncEchoEnv(server.endpoint)
        assert token not in repr(server) + repr(server.endpoint) + str(server.endpoint) + repr(
            client
        )
        with pytest.raises(AuthenticationError) as refused:
            await AsyncEchoEnv(server.endpoint.with_token("wrong-" + token[:4])).connect()
        assert token not in str(refused.value)
        cmdline = Path(f"/proc/{server.id}/cmdline").read_bytes().decode(errors="replace")
        assert token not in cmdline  # it travels in the environment, not argv
        for log in Path(tempfile.gettempdir()).glob("openenv-*/server.log"):
            assert token not in log.read_text(errors="replace")


async def test_tcp_servers_bind_the_host_asked_for_and_need_a_token_beyond_loopback() -> None:
    with pytest.raises(ValueError, match="without a token"):
        LocalProcessProvider("envs.echo_env", transport="tcp", host="0.0.0.0", auth=False)
    async with LocalProcessProvider("envs.echo_env", transport="tcp", host="127.0.0.2") as provider:
        server = await provider.start()
        assert server.endpoint.url.startswith("ws://127.0.0.2:")
        async with AsyncEchoEnv(server.endpoint) as env:
            await env.reset()
