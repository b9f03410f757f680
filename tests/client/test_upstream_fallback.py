"""Our client in upstream OpenEnv's dialect, against our own server (``protocol="upstream"``
makes it ask for no subprotocol), so every rule can be checked without openenv-core. The same
client against openenv-core's own server is tested in tests/interop."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.server import ServerConnection, serve

from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv import (
    AuthenticationError,
    CapacityError,
    ConnectError,
    ConnectionLostError,
    EnvError,
    EnvTimeoutError,
    InvalidActionError,
)
from openenv.protocol import PROTOCOL_VERSION
from openenv.server import ServerConfig, create_app
from tests.client.test_async_client import slow_app
from tests.conftest import running_server


async def test_typed_results_in_upstreams_dialect(echo_server: str) -> None:
    async with AsyncEchoEnv(echo_server, protocol="upstream") as env:
        assert env.hello is not None and env.hello.protocol == 0
        assert env.dialect == "upstream"
        result = await env.reset(seed=1, episode_id="ep")
        assert result.observation.echoed_message == "Echo environment ready!"
        result = await env.step(EchoAction(message="abcd"))
        assert (result.reward, result.done, result.observation.reward) == (0.4, False, 0.4)
        state = await env.state()
        assert (state.episode_id, state.step_count) == ("ep", 1)


async def test_auto_speaks_ours_with_our_server(echo_server: str) -> None:
    async with AsyncEchoEnv(echo_server) as env:
        assert env.dialect == "openenv"
        assert (
            env.hello is not None
            and env.hello.protocol == PROTOCOL_VERSION
            and env.hello.env == "echo_env"
        )


async def test_errors_map_to_our_exceptions() -> None:
    async with running_server(slow_app()) as address:
        async with AsyncEchoEnv(address, protocol="upstream") as env:
            await env.reset()
            with pytest.raises(EnvError, match=r"kaboom \(EXECUTION_ERROR\)"):
                await env.step(EchoAction(message="boom"))
            assert (await env.step(EchoAction(message="ok"))).reward == 0.2
        generic = AsyncEchoEnv(address, protocol="upstream")
        generic.action_type = dict  # type: ignore[assignment]
        await generic.reset()
        with pytest.raises(InvalidActionError, match=r"data\.message"):
            await generic.step({"mess": "x"})  # type: ignore[arg-type]
        await generic.close()


async def test_a_timed_out_call_drops_the_session_it_cannot_resynchronise() -> None:
    async with running_server(slow_app()) as address:
        env = AsyncEchoEnv(address, protocol="upstream", timeout=0.2)
        await env.reset()
        with pytest.raises(EnvTimeoutError):
            await env.step(EchoAction(message="slow", metadata={"sleep": 1}))
        assert not env.usable  # no ids: its late reply would pass for the next call's
        with pytest.raises(ConnectionLostError):
            await env.step(EchoAction(message="next"))
        await env.close()


async def test_capacity_and_auth_refusals_in_upstreams_dialect() -> None:
    app = create_app(slow_app().state.openenv.env_cls, config=ServerConfig(max_sessions=1))
    async with running_server(app) as address:
        async with AsyncEchoEnv(address, protocol="upstream") as first:
            await first.reset()
            second = AsyncEchoEnv(address, protocol="upstream")
            with pytest.raises(CapacityError, match="CAPACITY_REACHED"):
                await second.reset()
            await second.close()
    guarded = create_app(slow_app().state.openenv.env_cls, config=ServerConfig(token="t"))
    async with running_server(guarded) as address:
        with pytest.raises(AuthenticationError):
            await AsyncEchoEnv(address, protocol="upstream").connect()
        async with AsyncEchoEnv(address, protocol="upstream", token="t") as env:
            await env.reset()


async def test_an_unknown_path_is_a_connect_error_naming_it_not_an_auth_error(
    echo_server: str,
) -> None:
    wrong = echo_server.replace("/ws", "/env/ws")
    with pytest.raises(ConnectError, match=r"no WebSocket route at /env/ws \(HTTP 404\)") as info:
        await AsyncEchoEnv(wrong).connect()
    assert not isinstance(info.value, AuthenticationError)


async def test_protocol_openenv_refuses_a_server_without_our_subprotocol() -> None:
    async def handler(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        env = AsyncEchoEnv(f"ws://127.0.0.1:{port}", protocol="openenv")
        with pytest.raises(ConnectError, match=r"subprotocol openenv\.v1 refused"):
            await env.connect()
        await env.close()


def test_protocol_must_be_known() -> None:
    with pytest.raises(ValueError, match="protocol"):
        AsyncEchoEnv("ws://127.0.0.1:1", protocol="v2")


async def test_both_dialects_share_one_server(echo_server: str) -> None:
    async with (
        AsyncEchoEnv(echo_server) as ours,
        AsyncEchoEnv(echo_server, protocol="upstream") as theirs,
    ):
        results = await asyncio.gather(ours.reset(), theirs.reset())
        assert results[0] == results[1]
        results = await asyncio.gather(
            ours.step(EchoAction(message="x")), theirs.step(EchoAction(message="x"))
        )
        assert results[0] == results[1]
