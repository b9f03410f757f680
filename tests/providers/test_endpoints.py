"""EndpointProvider: servers already running, handed out in turn; nothing started or stopped."""

from __future__ import annotations

import pytest

from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv import EndpointProvider, EnvPool, ProviderError
from tests.conftest import running_server


async def test_round_robin_and_nothing_to_stop() -> None:
    provider = EndpointProvider(["ws://127.0.0.1:1", "http://127.0.0.1:2"], token="t")
    handles = [await provider.start() for _ in range(3)]
    assert [h.endpoint.url for h in handles] == [
        "ws://127.0.0.1:1/ws",
        "ws://127.0.0.1:2/ws",
        "ws://127.0.0.1:1/ws",
    ]
    assert all(h.endpoint.token == "t" for h in handles)
    assert len({h.id for h in handles}) == 3
    assert await provider.is_alive(handles[0])
    with pytest.raises(ProviderError, match="not started by this provider"):
        await provider.kill(handles[0])
    await provider.stop(handles[0])
    assert not await provider.is_alive(handles[0])
    await provider.close()
    assert provider.running() == []


def test_needs_an_endpoint() -> None:
    with pytest.raises(ValueError, match="at least one"):
        EndpointProvider([])


async def test_a_pool_over_two_running_servers(echo_app_factory: object) -> None:
    async with (
        running_server(echo_app_factory()) as first,  # type: ignore[operator]
        running_server(echo_app_factory()) as second,  # type: ignore[operator]
    ):
        async with EnvPool(AsyncEchoEnv, EndpointProvider([first, second]), size=6) as pool:
            await pool.reset()
            results = await pool.step([EchoAction(message="ab")] * 6)
            assert [r.reward for r in results] == [0.2] * 6
            assert {env.endpoint.url for env in pool.envs} == {first, second}
