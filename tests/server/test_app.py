"""The app in process (Starlette test client): routes, errors, limits, auth."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from envs.echo_env.models import EchoAction, EchoObservation
from envs.echo_env.server.echo_environment import EchoEnvironment
from openenv.protocol import (
    PROTOCOL_VERSION,
    SUBPROTOCOL,
    Close,
    Codec,
    Error,
    GetState,
    Goodbye,
    Hello,
    Reset,
    Result,
    StateReply,
    Step,
    reply_type,
)
from openenv.server import Environment, ServerConfig, create_app
from openenv.types import State

codec = Codec(reply_type(EchoObservation, State))
OURS = [SUBPROTOCOL]  # without it, a client gets upstream's dialect (tests/server/test_upstream*)
encode = msgspec.msgpack.encode


class FlakyEchoEnvironment(EchoEnvironment):
    """Raises on the message "boom", sleeps on "sleep"."""

    async def step(self, action: EchoAction) -> EchoObservation:  # type: ignore[override]
        if action.message == "boom":
            raise ValueError("the env blew up")
        if action.message == "sleep":
            await asyncio.sleep(5)
        return super().step(action)


def client_for(
    env: type[Environment[Any, Any, Any]] = EchoEnvironment, **config: Any
) -> TestClient:
    return TestClient(create_app(env, config=ServerConfig(**config)))


def call(ws: Any, request: Any) -> Any:
    ws.send_bytes(codec.encode(request))
    return codec.decode(ws.receive_bytes())


def open_session(ws: Any) -> Hello:
    hello = codec.decode(ws.receive_bytes())
    assert isinstance(hello, Hello)
    return hello


def test_hello_then_reset_step_state_close() -> None:
    with client_for() as client, client.websocket_connect("/ws", subprotocols=OURS) as ws:
        hello = open_session(ws)
        assert hello.protocol == PROTOCOL_VERSION
        assert hello.env == "echo_env"
        assert "message" in str(hello.action_schema)
        reset = call(ws, Reset(id=1))
        assert isinstance(reset, Result)
        assert reset.observation.echoed_message == "Echo environment ready!"
        step = call(ws, Step(id=2, action=EchoAction(message="Hello, World!")))
        assert (step.id, step.observation.echoed_message, step.observation.reward) == (
            2,
            "Hello, World!",
            1.3,
        )
        state = call(ws, GetState(id=3))
        assert isinstance(state, StateReply)
        assert state.state.step_count == 1
        assert call(ws, Close(id=4)) == Goodbye(id=4)


def test_text_frames_get_json_replies() -> None:
    with client_for() as client, client.websocket_connect("/ws", subprotocols=OURS) as ws:
        open_session(ws)
        ws.send_text('{"type": "reset", "id": 1}')
        reply = msgspec.json.decode(ws.receive_text())
        assert reply["type"] == "result"
        assert reply["observation"]["echoed_message"] == "Echo environment ready!"


@pytest.mark.parametrize(
    ("frame", "code", "request_id"),
    [
        (b"\xc1\xff garbage", "invalid_message", None),
        ('{"type": "jump", "id": 9}', "invalid_message", 9),
        ("not json at all", "invalid_message", None),
        (encode({"type": "step", "id": 5, "action": {"message": 42}}), "invalid_action", 5),
        (encode({"type": "step", "id": 6, "action": {}}), "invalid_action", 6),
    ],
)
def test_bad_frames_get_precise_errors_and_the_session_survives(
    frame: bytes | str, code: str, request_id: int | None
) -> None:
    with client_for() as client, client.websocket_connect("/ws", subprotocols=OURS) as ws:
        open_session(ws)
        call(ws, Reset(id=1))
        if isinstance(frame, str):
            ws.send_text(frame)
            reply = codec.decode(ws.receive_text())
        else:
            ws.send_bytes(frame)
            reply = codec.decode(ws.receive_bytes())
        assert isinstance(reply, Error)
        assert (reply.code, reply.id) == (code, request_id)
        assert reply.message
        after = call(ws, Step(id=10, action=EchoAction(message="still here")))
        assert after.observation.echoed_message == "still here"


def test_step_and_state_before_reset_are_refused() -> None:
    with client_for() as client, client.websocket_connect("/ws", subprotocols=OURS) as ws:
        open_session(ws)
        for request in (Step(id=1, action=EchoAction(message="x")), GetState(id=2)):
            reply = call(ws, request)
            assert isinstance(reply, Error)
            assert (reply.code, reply.id) == ("not_reset", request.id)
            assert "reset()" in reply.message
        assert isinstance(call(ws, Reset(id=3)), Result)


def test_env_exception_is_env_error_and_the_session_survives() -> None:
    with (
        client_for(FlakyEchoEnvironment) as client,
        client.websocket_connect("/ws", subprotocols=OURS) as ws,
    ):
        open_session(ws)
        call(ws, Reset(id=1))
        reply = call(ws, Step(id=2, action=EchoAction(message="boom")))
        assert isinstance(reply, Error)
        assert reply.code == "env_error"
        assert reply.message == "ValueError: the env blew up"
        assert (
            call(ws, Step(id=3, action=EchoAction(message="ok"))).observation.echoed_message == "ok"
        )


def test_step_over_the_time_limit_gets_timeout_and_closes_the_session() -> None:
    with client_for(FlakyEchoEnvironment, step_timeout=0.2) as client:
        with client.websocket_connect("/ws", subprotocols=OURS) as ws:
            open_session(ws)
            call(ws, Reset(id=1))
            reply = call(ws, Step(id=2, action=EchoAction(message="sleep")))
            assert isinstance(reply, Error)
            assert (reply.code, reply.id) == ("timeout", 2)
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_bytes()
            assert closed.value.code == 1011
        with client.websocket_connect("/ws", subprotocols=OURS) as ws:
            open_session(ws)
            assert isinstance(call(ws, Reset(id=1)), Result)


def test_oversized_frame_closes_with_1009_and_the_server_keeps_serving() -> None:
    with client_for(max_frame_bytes=1000) as client:
        with client.websocket_connect("/ws", subprotocols=OURS) as ws:
            open_session(ws)
            ws.send_bytes(codec.encode(Step(id=1, action=EchoAction(message="x" * 2000))))
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_bytes()
            assert closed.value.code == 1009
        with client.websocket_connect("/ws", subprotocols=OURS) as ws:
            open_session(ws)
            assert isinstance(call(ws, Reset(id=1)), Result)


def test_full_server_refuses_with_capacity_then_accepts_when_a_session_ends() -> None:
    with client_for(max_sessions=1) as client:
        with client.websocket_connect("/ws", subprotocols=OURS) as first:
            open_session(first)
            with client.websocket_connect("/ws", subprotocols=OURS) as second:
                refusal = codec.decode(second.receive_bytes())
                assert isinstance(refusal, Error)
                assert refusal.code == "capacity"
                assert "1 sessions" in refusal.message
                with pytest.raises(WebSocketDisconnect) as closed:
                    second.receive_bytes()
                assert closed.value.code == 1013
        with client.websocket_connect("/ws", subprotocols=OURS) as third:
            open_session(third)


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic s3cret", "Bearer s3cret "])
def test_missing_or_wrong_token_is_refused_before_any_env_exists(header: str | None) -> None:
    created = []

    class CountingEnv(EchoEnvironment):
        def __init__(self) -> None:
            created.append(self)
            super().__init__()

    headers = {"Authorization": header} if header else {}
    with client_for(CountingEnv, token="s3cret") as client:
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect("/ws", subprotocols=OURS, headers=headers),
        ):
            pass
        assert refused.value.code == 1008
        assert created == []
        with client.websocket_connect(
            "/ws", subprotocols=OURS, headers={"Authorization": "Bearer s3cret"}
        ) as ws:
            open_session(ws)
        assert len(created) == 1


def test_health_and_info() -> None:
    with client_for(max_sessions=7) as client:
        assert client.get("/health").json()["status"] == "healthy"
        info = client.get("/info").json()
        assert info["env"] == "echo_env"
        assert info["protocol"] == PROTOCOL_VERSION
        assert info["max_sessions"] == 7
        assert info["action_schema"]["$defs"]["EchoAction"]["required"] == ["message"]


def test_each_session_gets_its_own_env() -> None:
    with client_for() as client:
        with (
            client.websocket_connect("/ws", subprotocols=OURS) as a,
            client.websocket_connect("/ws", subprotocols=OURS) as b,
        ):
            open_session(a)
            open_session(b)
            call(a, Reset(id=1))
            call(b, Reset(id=1))
            call(a, Step(id=2, action=EchoAction(message="a")))
            assert call(a, GetState(id=3)).state.step_count == 1
            assert call(b, GetState(id=2)).state.step_count == 0


class TimeoutRaisingEnvironment(EchoEnvironment):
    def step(self, action: EchoAction) -> EchoObservation:
        raise TimeoutError("the env's own deadline")


@pytest.mark.parametrize("step_timeout", [None, 5.0])
def test_an_envs_own_timeout_error_is_env_error_not_a_server_timeout(
    step_timeout: float | None,
) -> None:
    with client_for(TimeoutRaisingEnvironment, step_timeout=step_timeout) as client:
        with client.websocket_connect("/ws", subprotocols=OURS) as ws:
            open_session(ws)
            call(ws, Reset(id=1))
            reply = call(ws, Step(id=2, action=EchoAction(message="x")))
            assert isinstance(reply, Error)
            assert reply.code == "env_error"
            assert "the env's own deadline" in reply.message
            assert isinstance(call(ws, Reset(id=3)), Result)
