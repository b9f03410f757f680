"""EnvPool over real local processes and real containers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv import (
    BatchError,
    ConnectionLostError,
    EnvPool,
    EnvTimeoutError,
    InvalidActionError,
    NotResetError,
    PoolError,
    ProviderError,
)
from openenv.providers import LocalProcessProvider
from openenv.providers.docker import LocalDockerProvider
from tests.providers.test_process import pid_alive


def echo_pool(size: int, **options: Any) -> EnvPool[AsyncEchoEnv]:
    env = options.pop("env", {})
    return EnvPool(AsyncEchoEnv, LocalProcessProvider("envs.echo_env", env=env), size, **options)


async def test_batch_results_come_back_in_env_order() -> None:
    async with echo_pool(6, sessions_per_server=3) as pool:
        first = await pool.reset()
        assert [r.observation.echoed_message for r in first] == ["Echo environment ready!"] * 6
        messages = [f"env-{i}" * (6 - i) for i in range(6)]
        results = await pool.step([EchoAction(message=m) for m in messages])
        assert [r.observation.echoed_message for r in results] == messages
        assert len({env.endpoint.unix_socket for env in pool.envs}) == 2


async def test_more_sessions_on_one_server_than_it_takes_pending_handshakes() -> None:
    # A server closes handshakes past its max_pending (64 by default): the pool opens its
    # sessions a few at a time, so 150 on one server all open.
    async with echo_pool(150, sessions_per_server=150, show_progress=False) as pool:
        results = await pool.reset()
        assert len(results) == 150 and len(pool.servers) == 1


async def test_step_needs_one_action_per_env() -> None:
    async with echo_pool(2) as pool:
        with pytest.raises(ValueError, match="expected 2 actions"):
            await pool.step([EchoAction(message="only one")])


async def test_a_failing_env_loses_nobody_elses_result() -> None:
    async with echo_pool(4, sessions_per_server=4) as pool:
        await pool.reset()
        actions: list[Any] = [EchoAction(message=str(i)) for i in range(4)]
        actions[2] = EchoAction(message=2)  # type: ignore[arg-type]  # rejected by the server
        with pytest.raises(BatchError) as caught:
            await pool.step(actions)
        error = caught.value
        assert list(error.errors) == [2]
        assert isinstance(error.errors[2], InvalidActionError)
        assert [r and r.observation.echoed_message for r in error.results] == ["0", "1", None, "3"]
        assert pool.stats.failed_calls == 1
        assert pool.stats.envs_replaced == 0  # a bad action does not break the session


async def test_killed_server_is_replaced_and_counted() -> None:
    async with echo_pool(4, sessions_per_server=2) as pool:
        await pool.reset()
        victim = pool.server_of(0)
        await pool.provider.kill(victim)
        with pytest.raises(BatchError) as caught:
            await pool.step([EchoAction(message="x")] * 4)
        assert sorted(caught.value.errors) == [0, 1]
        assert all(isinstance(e, ConnectionLostError) for e in caught.value.errors.values())
        assert (pool.stats.servers_replaced, pool.stats.envs_replaced) == (1, 2)
        assert pool.server_of(0) is pool.server_of(1)  # one replacement for both
        await pool.reset()
        results = await pool.step([EchoAction(message="y")] * 4)
        assert [r.observation.echoed_message for r in results] == ["y"] * 4


async def test_acquire_lends_each_env_to_one_worker_at_a_time() -> None:
    async with echo_pool(3, sessions_per_server=3) as pool:
        holders: set[int] = set()
        overlaps = 0

        async def worker(n: int) -> None:
            nonlocal overlaps
            async with pool.acquire() as env:
                if id(env) in holders:
                    overlaps += 1
                holders.add(id(env))
                await env.reset()
                await env.step(EchoAction(message=str(n)))
                await asyncio.sleep(0.01)
                holders.discard(id(env))

        await asyncio.gather(*(worker(n) for n in range(20)))
        assert overlaps == 0


async def test_episodes_survive_server_kills_on_replacements() -> None:
    async with echo_pool(4) as pool:
        killed: list[str] = []

        async def episode(env: AsyncEchoEnv) -> int:
            await env.reset()
            total = 0
            for i in range(5):
                result = await env.step(EchoAction(message="abcd"))
                assert result.observation.echoed_message == "abcd"
                total += result.observation.message_length
                if i == 2 and len(killed) < 3:
                    victim = pool.server_of(pool.envs.index(env))
                    killed.append(victim.id)
                    await pool.provider.kill(victim)
            return total

        outcomes = await pool.run_episodes(episode, 12, retries=2)
        assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
        assert [o.result for o in outcomes] == [20] * 12
        assert sum(o.attempts for o in outcomes) == 12 + len(killed)
        assert pool.stats.servers_replaced == len(killed) == 3


async def test_an_episode_that_keeps_failing_is_reported_with_its_cause() -> None:
    async with echo_pool(1) as pool:

        async def doomed(env: AsyncEchoEnv) -> None:
            await env.step(EchoAction(message="no reset"))

        (outcome,) = await pool.run_episodes(doomed, 1, retries=1)
        assert not outcome.ok and outcome.attempts == 2
        assert isinstance(outcome.error, NotResetError)


async def test_close_stops_everything_also_when_cancelled() -> None:
    pool = echo_pool(4, sessions_per_server=2)
    provider = pool.provider
    started = asyncio.Event()

    async def rollout() -> None:
        async with pool:
            await pool.reset()
            started.set()
            while True:
                await pool.step([EchoAction(message="loop")] * 4)

    task = asyncio.create_task(rollout())
    await asyncio.wait_for(started.wait(), 30)
    assert not task.done()
    pids = [int(server.id) for server in pool.servers]
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.sleep(0.05)
    task.cancel()  # a second Ctrl-C, in the middle of closing
    with pytest.raises(asyncio.CancelledError):
        await task
    assert provider.running() == []
    assert not any(pid_alive(pid) for pid in pids)
    with pytest.raises(PoolError, match="closed"):
        await pool.reset()


async def test_a_pool_that_cannot_start_cleans_up_what_did_start() -> None:
    provider = LocalProcessProvider("envs.echo_env", env={"OPENENV_MAX_SESSIONS": "1"})
    pool = EnvPool(AsyncEchoEnv, provider, 3, sessions_per_server=3)
    with pytest.raises(Exception, match="capacity"):
        await pool.start()
    assert provider.running() == []


@pytest.mark.usefixtures("docker_images")
async def test_docker_pool_replaces_a_killed_container() -> None:
    provider = LocalDockerProvider("echo-env:latest")
    async with EnvPool(AsyncEchoEnv, provider, 3) as pool:
        assert pool.stats.servers_started == 3  # one container per env
        await pool.reset()
        victim = pool.server_of(1)
        await provider.kill(victim)
        with pytest.raises(BatchError) as caught:
            await pool.step([EchoAction(message="x")] * 3)
        assert list(caught.value.errors) == [1]
        assert (pool.stats.servers_replaced, pool.stats.servers_started) == (1, 4)
        assert victim.id not in {s.id for s in provider.running()}
        await pool.reset()
        assert len(await pool.step([EchoAction(message="z")] * 3)) == 3
    assert provider.running() == []


async def test_client_timeout_is_reported_per_env() -> None:
    provider = LocalProcessProvider("tests.slow_echo:app")
    async with EnvPool(AsyncEchoEnv, provider, 2, sessions_per_server=2, timeout=0.3) as pool:
        await pool.reset()
        actions = [EchoAction(message="fast"), EchoAction(message="slow", metadata={"sleep": 1})]
        with pytest.raises(BatchError) as caught:
            await pool.step(actions)
        assert list(caught.value.errors) == [1]
        assert isinstance(caught.value.errors[1], EnvTimeoutError)
        assert caught.value.results[0].observation.echoed_message == "fast"


class _FlakyProvider(LocalProcessProvider):
    """A real process provider whose liveness check is slow (as across a cluster) and whose
    next ``fail_starts`` starts raise, as a transient provider failure would."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fail_starts = 0
        self.starts = 0
        self.checking = asyncio.Event()

    async def start(self) -> Any:
        self.starts += 1
        if self.fail_starts > 0:
            self.fail_starts -= 1
            raise ProviderError("transient start failure")
        return await super().start()

    async def is_alive(self, server: Any) -> bool:
        self.checking.set()
        await asyncio.sleep(0.2)  # a slow check widens the race window it must not open
        return await super().is_alive(server)


async def test_every_session_of_a_dead_server_shares_one_replacement() -> None:
    provider = _FlakyProvider("envs.echo_env")
    async with EnvPool(AsyncEchoEnv, provider, 8, sessions_per_server=8) as pool:
        await pool.reset()
        await provider.kill(pool.server_of(0))
        starts_before = provider.starts
        with pytest.raises(BatchError) as caught:
            await pool.step([EchoAction(message="x")] * 8)
        assert sorted(caught.value.errors) == list(range(8))
        assert provider.starts - starts_before == 1
        assert pool.stats.servers_replaced == 1 and pool.stats.envs_replaced == 8
        assert len(pool.servers) == 1 and len(provider.running()) == 1
        results = await pool.reset()
        assert len(results) == 8


async def test_a_failed_replacement_is_retried_by_the_next_call() -> None:
    provider = _FlakyProvider("envs.echo_env")
    async with EnvPool(AsyncEchoEnv, provider, 2, sessions_per_server=2) as pool:
        await pool.reset()
        await provider.kill(pool.server_of(0))
        provider.fail_starts = 1
        with pytest.raises(BatchError) as caught:
            await pool.step([EchoAction(message="x")] * 2)
        assert pool.stats.servers_replaced == 0
        # The heal failed with the provider's error as its cause; the next call heals again.
        with pytest.raises(BatchError) as again:
            await pool.step([EchoAction(message="x")] * 2)
        assert all(isinstance(e, ConnectionLostError) for e in caught.value.errors.values())
        assert all(isinstance(e, ConnectionLostError) for e in again.value.errors.values())
        assert pool.stats.servers_replaced == 1
        results = await pool.reset()
        assert [r.observation.echoed_message for r in results] == ["Echo environment ready!"] * 2


async def test_reset_seeds_follow_gymnasium_vector_semantics() -> None:
    provider = LocalProcessProvider("tests.slow_echo:app")  # its reset reports the seed
    async with EnvPool(AsyncEchoEnv, provider, 3, sessions_per_server=3) as pool:

        async def seeds(**kwargs: Any) -> list[Any]:
            return [r.observation.metadata["seed"] for r in await pool.reset(**kwargs)]

        assert await seeds(seed=10) == [10, 11, 12]
        assert await seeds(seed=[7, None, 9]) == [7, None, 9]
        assert await seeds() == [None, None, None]
        with pytest.raises(ValueError, match="one per env"):
            await pool.reset(seed=[1, 2])
