"""A pool's metrics on the application's own registry: exact counts after known calls."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv import EnvPool
from openenv.exceptions import ConnectionLostError, PoolError
from openenv.observability.calls import CallMetrics
from openenv.providers import LocalProcessProvider


def samples(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_pool_metrics_count_exactly() -> None:
    registry = CollectorRegistry()
    provider = LocalProcessProvider("envs.echo_env")
    async with EnvPool(AsyncEchoEnv, provider, 2, registry=registry, show_progress=False) as pool:
        await pool.reset(seed=0)
        for _ in range(3):
            await pool.step([EchoAction(message="a"), EchoAction(message="b")])
        async with pool.fork(pool.envs[0], 2) as group:
            await group[0].step(EchoAction(message="on a fork"))
            forks_open = samples(registry)["openenv_pool_forks_open", frozenset()]
        await pool.envs[1].state()
        await provider.kill(pool.server_of(1))  # the next batch fails on env 1 and heals it
        with pytest.raises(PoolError):
            await pool.step([EchoAction(message="a"), EchoAction(message="b")])
        found = samples(registry)
        assert pool.stats.failed_calls == 1 and pool.stats.envs_replaced == 1  # stats stay

    def calls(kind: str) -> float:
        return found["openenv_client_calls_total", frozenset({("kind", kind)})]

    assert calls("reset") == 2
    assert calls("step") == 2 * 3 + 1 + 2  # batches, the fork's step, the failed batch
    assert calls("state") == 1
    assert calls("fork") == 1
    assert found["openenv_client_call_failures_total", frozenset({("kind", "step")})] == 1
    assert found["openenv_client_call_seconds_count", frozenset({("kind", "step")})] == 9
    assert found["openenv_pool_failed_calls_total", frozenset()] == 1
    assert found["openenv_pool_envs_replaced_total", frozenset()] == 1
    assert found["openenv_pool_servers_replaced_total", frozenset()] == 1
    assert found["openenv_pool_forks_total", frozenset()] == 2
    assert found["openenv_pool_envs", frozenset()] == 2
    assert forks_open == 2
    assert found["openenv_pool_forks_open", frozenset()] == 0


async def test_a_lone_client_counts_on_a_registry(echo_server: str) -> None:
    registry = CollectorRegistry()
    metrics = CallMetrics(registry)
    async with AsyncEchoEnv(echo_server, metrics=metrics) as env:
        await env.reset()
        await env.step(EchoAction(message="x"))
    with pytest.raises(ConnectionLostError):
        await env.step(EchoAction(message="after close"))
    found = samples(registry)
    assert found["openenv_client_calls_total", frozenset({("kind", "step")})] == 2
    assert found["openenv_client_call_failures_total", frozenset({("kind", "step")})] == 1


def test_one_pool_per_registry() -> None:
    registry = CollectorRegistry()
    EnvPool(AsyncEchoEnv, LocalProcessProvider("envs.echo_env"), 1, registry=registry)
    with pytest.raises(ValueError, match="Duplicated"):
        EnvPool(AsyncEchoEnv, LocalProcessProvider("envs.echo_env"), 1, registry=registry)


async def test_a_sync_client_counts_too(echo_server: str) -> None:
    from envs.echo_env import EchoEnv
    from openenv.exceptions import InvalidActionError

    registry = CollectorRegistry()

    def calls() -> None:  # off the loop that serves echo_server
        with EchoEnv(echo_server, metrics=CallMetrics(registry)) as env:
            env.reset()
            env.step(EchoAction(message="x"))
            env.state()
            with pytest.raises(InvalidActionError):
                env.call_tool("no_such_tool")

    await asyncio.to_thread(calls)
    found = samples(registry)
    for kind in ("reset", "step", "state", "tool"):
        assert found["openenv_client_calls_total", frozenset({("kind", kind)})] == 1
    assert found["openenv_client_call_failures_total", frozenset({("kind", "tool")})] == 1
