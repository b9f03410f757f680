"""EnvPool over real local processes and real containers."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv import BatchError, EnvPool, EnvTimeoutError, PoolError
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
        assert type(error.errors[2]).__name__ == "InvalidActionError"
        assert [r and r.observation.echoed_message for r in error.results] == ["0", "1", None, "3"]
        assert pool.stats.failed_calls == 1
        assert pool.stats.envs_replaced == 0  # a bad action does not break the session


async def test_killed_server_is_replaced_and_counted() -> None:
    async with echo_pool(4, sessions_per_server=2) as pool:
        await pool.reset()
        victim = pool._slots[0].server
        os.kill(int(victim.id), signal.SIGKILL)
        with pytest.raises(BatchError) as caught:
            await pool.step([EchoAction(message="x")] * 4)
        assert sorted(caught.value.errors) == [0, 1]
        assert all(type(e).__name__ == "ConnectionLostError" for e in caught.value.errors.values())
        assert (pool.stats.servers_replaced, pool.stats.envs_replaced) == (1, 2)
        assert pool._slots[0].server is pool._slots[1].server  # one replacement for both
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
                    victim = next(s.server for s in pool._slots if s.client is env)
                    killed.append(victim.id)
                    os.kill(int(victim.id), signal.SIGKILL)
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
        assert type(outcome.error).__name__ == "NotResetError"


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
    pids = [int(s.server.id) for s in pool._slots]
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
        await pool.reset()
        victim = pool._slots[1].server
        await provider.kill(victim)
        with pytest.raises(BatchError) as caught:
            await pool.step([EchoAction(message="x")] * 3)
        assert list(caught.value.errors) == [1]
        assert pool.stats.servers_replaced == 1
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
