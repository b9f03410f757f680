"""Our clients and pool against env servers built with upstream's own ``create_app`` (0.3.0 and
0.10, plain and MCP tool envs): the client falls back to upstream's dialect when our subprotocol
is not accepted."""

from __future__ import annotations

from typing import Any

import pytest

from envs.echo_env import AsyncEchoEnv, EchoAction, EchoEnv
from openenv import (
    AsyncEnvClient,
    CapacityError,
    ConnectError,
    EndpointProvider,
    EnvPool,
    InvalidActionError,
)
from openenv.tools import ToolResult
from openenv.types import GenericObservation, GenericState, State
from tests.interop.conftest import UpstreamServer

pytestmark = pytest.mark.timeout(300)  # the first test pays for upstream's cold start


def test_sync_echo_env_drives_an_upstream_server(upstream_echo_server: UpstreamServer) -> None:
    env = EchoEnv(upstream_echo_server.ws_url)
    try:
        result = env.reset(seed=1, episode_id="ep-1")
        assert result.observation.echoed_message == "Echo environment ready!"
        assert (result.reward, result.done) == (0.0, False)
        result = env.step(EchoAction(message="Hello, World!"))
        assert result.observation.echoed_message == "Hello, World!"
        assert result.observation.message_length == 13
        assert result.reward == result.observation.reward == 1.3
        state = env.state()
        assert isinstance(state, State)
        assert (state.episode_id, state.step_count) == ("ep-1", 1)
        assert env.hello is not None and env.hello.protocol == 0  # upstream has no greeting
        assert env.dialect == "upstream"
    finally:
        env.close()


async def test_errors_map_to_our_exceptions_and_the_session_survives(
    upstream_echo_server: UpstreamServer,
) -> None:
    async with AsyncEnvClient[Any, Any, Any](upstream_echo_server.ws_url) as env:
        await env.reset()
        with pytest.raises(InvalidActionError, match=r"message.*VALIDATION_ERROR"):
            await env.step({"wrong": 1})
        result = await env.step({"message": "still here"})
        assert result.observation.metadata == {}
        assert result.reward == 1.0


async def test_protocol_openenv_refuses_an_upstream_server(
    upstream_echo_server: UpstreamServer,
) -> None:
    env = AsyncEchoEnv(upstream_echo_server.ws_url, protocol="openenv")
    with pytest.raises(ConnectError, match=r"openenv\.v1"):
        await env.connect()
    await env.close()


async def test_a_full_upstream_server_raises_capacity_error(
    upstream_echo_server: UpstreamServer,
) -> None:
    envs = [AsyncEchoEnv(upstream_echo_server.ws_url) for _ in range(8)]  # its limit
    try:
        for env in envs:
            await env.reset()
        extra = AsyncEchoEnv(upstream_echo_server.ws_url)
        with pytest.raises(CapacityError, match="CAPACITY_REACHED"):
            await extra.reset()
        await extra.close()
    finally:
        for env in envs:
            await env.close()


async def test_env_pool_drives_upstream_servers(upstream_echo_server: UpstreamServer) -> None:
    provider = EndpointProvider([upstream_echo_server.ws_url])
    async with EnvPool(AsyncEchoEnv, provider, size=4) as pool:
        results = await pool.reset()
        assert [r.observation.echoed_message for r in results] == ["Echo environment ready!"] * 4
        results = await pool.step([EchoAction(message="x" * i) for i in range(4)])
        assert [r.reward for r in results] == [0.0, 0.1, 0.2, 0.3]
        async with pool.acquire() as env:
            assert (await env.state()).step_count == 1

        async def episode(env: AsyncEchoEnv) -> float | None:
            await env.reset()
            return (await env.step(EchoAction(message="hello"))).reward

        outcomes = await pool.run_episodes(episode, 12)
        assert [o.result for o in outcomes] == [0.5] * 12


async def test_our_client_lists_and_calls_an_upstream_mcp_envs_tools(
    upstream_mcp_echo_server: UpstreamServer,
) -> None:
    # No types declared by hand: a generic client, tools decoded into ToolResult.
    async with AsyncEnvClient[Any, Any, Any](upstream_mcp_echo_server.ws_url) as env:
        (tool,) = await env.list_tools()
        assert (tool.name, tool.description) == ("echo_message", "Echo back the provided message.")
        assert tool.input_schema["required"] == ["message"]
        reset = await env.reset()
        assert isinstance(reset.observation, GenericObservation)
        assert reset.observation.metadata == {"status": "ready"}  # metadata round-trips
        called = await env.call_tool("echo_message", message="Hello!")
        assert isinstance(called.observation, ToolResult)
        assert (called.observation.result, called.observation.error) == ("Hello!", None)
        missing = await env.call_tool("no_such_tool")
        assert missing.observation.error is not None
        assert missing.observation.error.type == "tool_not_found"
        state = await env.state()
        assert isinstance(state, GenericState) and state.step_count == 2


async def test_env_pool_drives_an_upstream_mcp_env(
    upstream_mcp_echo_server: UpstreamServer,
) -> None:
    provider = EndpointProvider([upstream_mcp_echo_server.ws_url])
    async with EnvPool(AsyncEnvClient, provider, size=3) as pool:

        async def episode(env: AsyncEnvClient[Any, Any, Any]) -> Any:
            await env.reset()
            return (await env.call_tool("echo_message", message="x" * 3)).observation.result

        outcomes = await pool.run_episodes(episode, 6)
        assert [o.result for o in outcomes] == ["xxx"] * 6
