"""EnvPool.fork groups and fresh_per_episode pools, over real processes and real containers."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

import pytest

from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv import EnvPool, PoolError
from openenv.endpoint import Endpoint
from openenv.exceptions import ProviderError
from openenv.providers import LocalProcessProvider
from openenv.providers.base import ServerHandle
from openenv.providers.docker import LocalDockerProvider
from tests.conftest import ECHO_IMAGE, openenv_children, our_containers
from tests.providers.test_process import pid_alive


async def server_info(endpoint: Endpoint) -> dict[str, Any]:
    """The server's ``/info``, over its unix socket or TCP port."""
    if endpoint.unix_socket:
        reader, writer = await asyncio.open_unix_connection(endpoint.unix_socket)
    else:
        url = urlsplit(endpoint.url)
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
    auth = f"Authorization: Bearer {endpoint.token}\r\n" if endpoint.token else ""
    writer.write(f"GET /info HTTP/1.0\r\nHost: localhost\r\n{auth}\r\n".encode())
    response = await reader.read()
    writer.close()
    info: dict[str, Any] = json.loads(response.split(b"\r\n\r\n", 1)[1])
    return info


def say(message: str) -> EchoAction:
    return EchoAction(message=message)


# Fork groups.


async def test_a_fork_group_branches_one_env_and_is_closed_after_the_block() -> None:
    provider = LocalProcessProvider("envs.echo_env")
    async with EnvPool(AsyncEchoEnv, provider, 2) as pool, pool.acquire() as env:
        await env.reset()
        await env.step(say("prefix"))
        async with pool.fork(env, 4) as group:
            assert len(group) == 4
            for extra, branch in enumerate(group):
                for _ in range(extra):
                    await branch.step(say("branch"))
            assert [(await b.state()).step_count for b in group] == [1, 2, 3, 4]
            assert (await server_info(env.endpoint))["active_sessions"] == 5
        assert all(branch.closed for branch in group)
        assert (await env.state()).step_count == 1
        assert pool.stats.forks == 4


async def test_awaited_forks_are_the_callers_until_the_pool_closes() -> None:
    provider = LocalProcessProvider("envs.echo_env")
    async with EnvPool(AsyncEchoEnv, provider, 1) as pool, pool.acquire() as env:
        await env.reset()
        group = await pool.fork(env, 2)
        await group[0].step(say("x"))
        await group[0].close()
    assert all(branch.closed for branch in group)  # the pool closed the one left open


# Fresh servers per episode.


def marker_pool(size: int, provider: Any = None, **options: Any) -> EnvPool[AsyncEchoEnv]:
    provider = provider or LocalProcessProvider("tests.marker_env:app")
    return EnvPool(AsyncEchoEnv, provider, size, fresh_per_episode=True, **options)


async def test_fresh_mode_never_hands_out_a_used_server_and_leaves_nothing_behind() -> None:
    pool = marker_pool(3, spares=2)
    servers: list[int] = []

    async def episode(env: AsyncEchoEnv) -> None:
        await env.reset()
        first = await env.step(say("hello"))
        # The server process's marker: no session of this server has stepped before.
        assert first.observation.echoed_message == "fresh"
        assert (await env.step(say("again"))).observation.echoed_message == "used"
        info = await server_info(env.endpoint)
        assert info["sessions_served"] == 1  # ours, opened ahead as a spare
        servers.append(first.observation.metadata["pid"])

    async with pool:
        assert pool.stats.servers_started == 2  # the spares, ready before start() returns
        outcomes = await pool.run_episodes(episode, 10, retries=0)
        assert [o.error for o in outcomes] == [None] * 10
        async with pool.acquire() as env:
            await episode(env)
    assert len(servers) == len(set(servers)) == 11
    assert pool.stats.servers_retired == pool.stats.servers_started >= 11
    assert pool.stats.start_failures == 0
    assert pool.provider.running() == []
    assert not any(pid_alive(pid) for pid in servers)
    assert openenv_children() == []


async def marked_pid(env: AsyncEchoEnv) -> int:
    await env.reset()
    step = await env.step(say("x"))
    assert step.observation.echoed_message == "fresh"
    pid: int = step.observation.metadata["pid"]
    return pid


async def test_fresh_mode_stops_the_used_server_after_the_episode() -> None:
    provider = LocalProcessProvider("tests.marker_env:app")
    async with marker_pool(1, provider, spares=1) as pool:
        async with pool.acquire() as env:
            pid = await marked_pid(env)
        async with pool.acquire() as env:
            assert await marked_pid(env) != pid
        async with asyncio.timeout(10):
            while pid_alive(pid):  # noqa: ASYNC110 - stopped in the background; no event
                await asyncio.sleep(0.02)


async def test_a_taker_woken_by_a_new_spare_still_gets_a_replacement_started() -> None:
    async with marker_pool(2, spares=1) as pool:
        first, second = pool.acquire(), pool.acquire()
        await first.__aenter__()  # takes the only spare; its replacement starts
        waiting = asyncio.ensure_future(second.__aenter__())  # waits for that one
        try:
            await waiting
            await second.__aexit__(None, None, None)
        finally:
            await first.__aexit__(None, None, None)
        # The second taker's spare must be replaced too, with no further acquire.
        async with asyncio.timeout(30):
            while pool.spares_ready < 1:  # noqa: ASYNC110 - started in the background; no event
                await asyncio.sleep(0.02)


async def test_fresh_mode_has_no_batch_calls() -> None:
    async with marker_pool(1, spares=1) as pool:
        with pytest.raises(PoolError, match="acquire"):
            await pool.reset()
        assert pool.envs == []


class _Flaky(LocalProcessProvider):
    """A real process provider whose first ``failures`` starts fail, and which records how
    many starts ran at once."""

    def __init__(self, failures: int, **options: Any) -> None:
        super().__init__("tests.marker_env:app", **options)
        self.failures = failures
        self.running_starts = 0
        self.most_at_once = 0

    async def start(self) -> ServerHandle:
        self.running_starts += 1
        self.most_at_once = max(self.most_at_once, self.running_starts)
        try:
            if self.failures > 0:
                self.failures -= 1
                await asyncio.sleep(0)
                raise ProviderError("injected start failure")
            return await super().start()
        finally:
            self.running_starts -= 1


async def test_start_failures_are_retried_counted_and_starts_stay_bounded() -> None:
    provider = _Flaky(failures=2)
    async with marker_pool(2, provider, spares=3, start_concurrency=1) as pool:
        assert pool.stats.start_failures == 2
        outcomes = await pool.run_episodes(marked_pid, 4)
        assert all(o.ok for o in outcomes)
    assert provider.most_at_once == 1
    assert provider.running() == []


async def test_a_server_that_never_starts_fails_the_pool_with_its_cause() -> None:
    provider = LocalProcessProvider("tests.no_such_module:app", startup_timeout=10)
    pool = EnvPool(AsyncEchoEnv, provider, 1, fresh_per_episode=True, spares=1)
    with pytest.raises(PoolError, match="5 failures in a row") as caught:
        await pool.start()
    assert isinstance(caught.value.__cause__, ProviderError)
    assert pool.stats.start_failures == 5
    assert provider.running() == []


def test_fresh_mode_needs_a_server_per_session() -> None:
    with pytest.raises(ValueError, match="server of its own"):
        marker_pool(2, sessions_per_server=2)


@pytest.mark.usefixtures("docker_images")
async def test_docker_fresh_mode_gives_each_episode_an_unused_container() -> None:
    provider = LocalDockerProvider(ECHO_IMAGE)
    seen: list[str] = []

    async def episode(env: AsyncEchoEnv) -> None:
        await env.reset()
        await env.step(say("x"))
        info = await server_info(env.endpoint)
        assert (info["sessions_served"], info["active_sessions"]) == (1, 1)
        seen.append(str(env.endpoint))

    async with EnvPool(AsyncEchoEnv, provider, 2, fresh_per_episode=True, spares=2) as pool:
        outcomes = await pool.run_episodes(episode, 6, retries=0)
        assert [o.error for o in outcomes] == [None] * 6
    assert len(set(seen)) == 6
    assert provider.running() == []
    assert our_containers() == []
