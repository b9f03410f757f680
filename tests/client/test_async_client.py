"""AsyncEnvClient against real servers: errors mapped at the boundary, timeouts, ids."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from envs.echo_env import AsyncEchoEnv, EchoAction
from envs.echo_env.models import EchoObservation
from openenv import (
    AsyncEnvClient,
    AuthenticationError,
    ConnectError,
    ConnectionLostError,
    EnvError,
    EnvTimeoutError,
    ErrorCode,
    InvalidActionError,
    NotResetError,
    OpenEnvError,
    RemoteError,
    ServerTimeoutError,
    VersionMismatchError,
)
from openenv.protocol import PROTOCOL_VERSION, CloseCode, Codec, Error, Hello, request_type
from openenv.server import ServerConfig, create_app
from tests.conftest import running_server
from tests.slow_echo import SlowEchoEnvironment


def slow_app(**config: Any) -> Any:
    return create_app(SlowEchoEnvironment, config=ServerConfig(**config))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_typed_results_and_state(echo_server: str) -> None:
    async with AsyncEchoEnv(echo_server) as env:
        assert env.hello is not None and env.hello.env == "echo_env"
        first = await env.reset(episode_id="ep-1")
        assert isinstance(first.observation, EchoObservation)
        await env.step(EchoAction(message="a"))
        state = await env.state()
        assert (state.episode_id, state.step_count) == ("ep-1", 1)


async def test_generic_client_works_with_any_server(echo_server: str) -> None:
    async with AsyncEnvClient[Any, Any, Any](echo_server) as env:
        result = await env.reset()
        assert result.reward == 0.0


async def test_remote_errors_raise_precise_exceptions() -> None:
    async with running_server(slow_app()) as address, AsyncEchoEnv(address) as env:
        with pytest.raises(NotResetError) as not_reset:
            await env.step(EchoAction(message="x"))
        assert not_reset.value.code is ErrorCode.NOT_RESET
        await env.reset()
        with pytest.raises(EnvError, match="RuntimeError: kaboom") as caught:
            await env.step(EchoAction(message="boom"))
        assert caught.value.code is ErrorCode.ENV_ERROR
        # The request id of the failed call: the third request of this session.
        assert caught.value.request_id == not_reset.value.request_id + 2  # type: ignore[operator]
        with pytest.raises(InvalidActionError, match=r"\$\.action\.message") as invalid:
            await env.step(EchoAction(message=123))  # type: ignore[arg-type]
        assert invalid.value.code is ErrorCode.INVALID_ACTION
        assert (await env.step(EchoAction(message="fine"))).observation.echoed_message == "fine"


async def test_client_timeout_then_late_reply_is_dropped_not_misread() -> None:
    async with running_server(slow_app()) as address:
        env = AsyncEchoEnv(address, timeout=0.2)
        async with env:
            await env.reset()
            with pytest.raises(EnvTimeoutError, match=r"0\.2 s") as caught:
                await env.step(EchoAction(message="late", metadata={"sleep": 0.5}))
            assert (caught.value.timeout, caught.value.request) == (0.2, "step")
            assert caught.value.request_id == 2  # reset was request 1
            assert isinstance(caught.value, TimeoutError)
            # The deadline interrupted the call, not its task: nothing is left to uncancel.
            task = asyncio.current_task()
            assert task is not None and task.cancelling() == 0
            await asyncio.sleep(0.5)  # the late reply to the timed-out step arrives meanwhile
            result = await env.step(EchoAction(message="on time"))
            assert result.observation.echoed_message == "on time"


async def test_cancelled_call_leaves_the_session_usable() -> None:
    async with running_server(slow_app()) as address, AsyncEchoEnv(address) as env:
        await env.reset()
        task = asyncio.create_task(env.step(EchoAction(message="slow", metadata={"sleep": 0.3})))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        result = await env.step(EchoAction(message="next"))
        assert result.observation.echoed_message == "next"


async def test_server_step_timeout_is_server_timeout_error() -> None:
    async with running_server(slow_app(step_timeout=0.1)) as address, AsyncEchoEnv(address) as env:
        await env.reset()
        with pytest.raises(ServerTimeoutError) as timed_out:
            await env.step(EchoAction(message="x", metadata={"sleep": 1}))
        assert timed_out.value.code is ErrorCode.TIMEOUT
        with pytest.raises(ConnectionLostError) as lost:
            await env.step(EchoAction(message="x"))
        assert lost.value.code == CloseCode.INTERNAL_ERROR
        assert not env.usable


async def test_nothing_listening_is_connect_error() -> None:
    with pytest.raises(ConnectError, match="cannot connect") as caught:
        await AsyncEchoEnv(f"ws://127.0.0.1:{free_port()}", connect_timeout=2).connect()
    assert caught.value.status is None  # nothing answered, so no HTTP status either


async def test_wrong_token_is_authentication_error() -> None:
    async with running_server(slow_app(token="right")) as address:
        with pytest.raises(AuthenticationError, match="token") as caught:
            await AsyncEchoEnv(address, token="wrong").connect()
        assert caught.value.status == 403
        with pytest.raises(AuthenticationError):
            await AsyncEchoEnv(address).connect()
        async with AsyncEchoEnv(address, token="right") as env:
            await env.reset()


async def test_server_gone_mid_session_is_connection_lost() -> None:
    async with running_server(slow_app()) as address:
        env = AsyncEchoEnv(address, timeout=None)  # only noticing the loss can end the call
        await env.reset()
    with pytest.raises(ConnectionLostError) as caught:
        await env.step(EchoAction(message="anyone?"))
    assert caught.value.code == CloseCode.SERVICE_RESTART  # the server shut down
    await env.close()


async def test_version_mismatch_is_reported() -> None:
    codec = Codec(request_type(EchoAction))
    from websockets.asyncio.server import serve
    from websockets.typing import Subprotocol

    from openenv.protocol import SUBPROTOCOL

    async def old_server(ws: Any) -> None:
        await ws.send(codec.encode(Hello(protocol=0, env="old", session_id="x")))
        await ws.wait_closed()

    subprotocols = [Subprotocol(SUBPROTOCOL)]
    async with serve(old_server, "127.0.0.1", 0, subprotocols=subprotocols) as server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(VersionMismatchError, match="protocol 0") as caught:
            await AsyncEchoEnv(f"ws://127.0.0.1:{port}").connect()
        assert (caught.value.server_version, caught.value.client_version) == (0, PROTOCOL_VERSION)


async def test_an_error_code_of_a_newer_server_is_a_remote_error_with_code_unknown() -> None:
    from websockets.asyncio.server import serve
    from websockets.typing import Subprotocol

    from openenv.protocol import SUBPROTOCOL

    codec = Codec(request_type(EchoAction))

    async def newer_server(ws: Any) -> None:
        await ws.send(codec.encode(Hello(protocol=PROTOCOL_VERSION, env="new", session_id="x")))
        request = codec.decode(await ws.recv())
        await ws.send(codec.encode(Error(code="quota", message="over quota", id=request.id)))
        await ws.wait_closed()

    subprotocols = [Subprotocol(SUBPROTOCOL)]
    async with serve(newer_server, "127.0.0.1", 0, subprotocols=subprotocols) as server:
        port = server.sockets[0].getsockname()[1]
        async with AsyncEchoEnv(f"ws://127.0.0.1:{port}") as env:
            with pytest.raises(RemoteError, match="over quota") as caught:
                await env.reset()
    assert type(caught.value) is RemoteError
    assert (caught.value.code, caught.value.request_id) == (ErrorCode.UNKNOWN, 1)


async def test_closed_client_refuses_calls_and_close_is_idempotent(echo_server: str) -> None:
    env = AsyncEchoEnv(echo_server)
    await env.reset()
    await env.close()
    await env.close()
    with pytest.raises(OpenEnvError, match="closed"):
        await env.reset()


async def test_calls_on_one_client_are_serialised(echo_server: str) -> None:
    async with AsyncEchoEnv(echo_server) as env:
        await env.reset()
        messages = [f"m{i}" for i in range(50)]
        results = await asyncio.gather(*(env.step(EchoAction(message=m)) for m in messages))
        assert [r.observation.echoed_message for r in results] == messages
        assert (await env.state()).step_count == 50
