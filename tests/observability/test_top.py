"""``openenv top`` in a real terminal (tmux) against running servers: it shows each server
with its sessions and steps, refreshes, and quits cleanly on q and on Ctrl-C, handing the
terminal back in its normal mode."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv import EnvPool
from openenv.providers import LocalProcessProvider
from openenv.top import collect

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tmux() -> str:
    found = shutil.which("tmux")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI but no tmux (.ci/run installs it)")
        pytest.skip("no tmux")
    return found


async def _tmux(binary: str, socket: str, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        binary, "-L", socket, *args, stdout=asyncio.subprocess.PIPE, cwd=ROOT
    )
    out, _ = await process.communicate()
    return out.decode()


@contextlib.asynccontextmanager
async def terminal(binary: str, command: str) -> AsyncIterator[Callable[..., object]]:
    """``command`` in a detached 150x40 tmux session of a tmux server of our own; yields
    ``tmux(*args)``. The session and its server are killed afterwards."""
    socket = f"openenv-test-{uuid.uuid4().hex[:8]}"
    await _tmux(binary, socket, "new-session", "-d", "-x", "150", "-y", "40", "-s", "t", command)
    try:
        yield lambda *args: _tmux(binary, socket, *args)
    finally:
        await _tmux(binary, socket, "kill-server")


async def screen_until(tmux: Callable[..., object], wanted: Callable[[str], bool]) -> str:
    """Wait (bounded) until the pane shows what ``wanted`` accepts; returns the pane's text."""
    text = ""
    try:
        async with asyncio.timeout(40):
            while True:
                text = await tmux("capture-pane", "-p", "-t", "t")  # type: ignore[misc]
                if wanted(text):
                    return text
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"the terminal never showed what we wait for; last:\n{text}") from None


@contextlib.asynccontextmanager
async def stepping_pool() -> AsyncIterator[EnvPool[AsyncEchoEnv]]:
    """Two echo servers, one session each, stepping until the block ends."""
    provider = LocalProcessProvider("envs.echo_env")
    async with EnvPool(AsyncEchoEnv, provider, 2, show_progress=False) as pool:
        await pool.reset()

        async def step_forever() -> None:
            while True:
                await pool.step([EchoAction(message="top")] * 2)

        stepping = asyncio.create_task(step_forever())
        try:
            yield pool
        finally:
            stepping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stepping


def _shows_servers(ids: list[str]) -> Callable[[str], bool]:
    def wanted(text: str) -> bool:
        rows = [line for line in text.splitlines() if any(f" {i} " in line for i in ids)]
        # a row per server, with one session, and a refresh that measured steps per second
        return len(rows) == len(ids) and all(" 1 " in row and "µs" in row for row in rows)

    return wanted


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("key", "code"), [("q", 0), ("C-c", 130)])
async def test_top_in_a_terminal(tmux: str, key: str, code: int) -> None:
    top = f"{sys.executable} -m openenv top --interval 0.3"
    # After top: its exit code, and whether the terminal is back in canonical, echoing mode.
    command = (
        f"{top}; echo top exited $?; stty -a | grep -o -e '-*icanon' -e '-*echo '; "
        "echo checked; sleep 60"
    )
    async with stepping_pool() as pool, terminal(tmux, command) as term:
        ids = [server.id for server in pool.servers]
        shown = await screen_until(term, _shows_servers(ids))
        assert "SESSIONS" in shown and "STEPS/S" in shown and "q quits" in shown
        await term("send-keys", "-t", "t", key)
        after = await screen_until(term, lambda text: "\nchecked" in text)
    lines = [line.strip() for line in after.splitlines()]
    assert f"top exited {code}" in lines
    assert "icanon" in lines and "echo" in lines  # not -icanon, -echo: the terminal is back


async def test_collect_reads_every_local_server() -> None:
    async with stepping_pool() as pool:
        rows = await collect()
    by_id = {row.id: row for row in rows}
    for server in pool.servers:
        snapshot = by_id[server.id].snapshot
        assert snapshot is not None and snapshot.sessions == 1 and snapshot.steps > 0


@pytest.mark.usefixtures("docker_images")
async def test_top_sees_a_container() -> None:
    from openenv.providers.docker import LocalDockerProvider
    from tests.conftest import ECHO_IMAGE

    async with LocalDockerProvider(ECHO_IMAGE) as provider:
        server = await provider.start()
        async with AsyncEchoEnv(server.endpoint) as env:
            await env.reset()
            await env.step(EchoAction(message="in a container"))
            rows = {row.id: row for row in await collect()}
    row = rows[server.id]
    assert row.kind == "docker" and row.error is None and row.snapshot is not None
    assert row.snapshot.sessions == 1 and row.snapshot.steps == 1
