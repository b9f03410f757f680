"""Our server in upstream OpenEnv's dialect (a client asking for no subprotocol), in process.

The end-to-end checks with openenv-core's own clients are in tests/interop; these pin down
each rule of the dialect, including the ones upstream's clients never exercise.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from envs.echo_env.models import EchoAction, EchoObservation
from envs.echo_env.server.echo_environment import EchoEnvironment
from openenv.protocol import SUBPROTOCOL
from openenv.server import Environment, ServerConfig, create_app
from openenv.types import State
from tests.server.test_app import FlakyEchoEnvironment


class NeedsResetEnvironment(EchoEnvironment):
    """Its step fails before the first reset, as many real envs' do."""

    def __init__(self) -> None:
        self._state = None  # type: ignore[assignment]

    def step(self, action: EchoAction) -> EchoObservation:
        if self._state is None:
            raise RuntimeError("reset first")
        return super().step(action)


class BrokenFactoryEnvironment(EchoEnvironment):
    def __init__(self) -> None:
        raise OSError("no GPU here")


def client_for(env: type[Environment[Any, Any, Any]] = EchoEnvironment, **config: Any) -> Any:
    return TestClient(create_app(env, config=ServerConfig(**config)))


def call(ws: Any, message: dict[str, Any] | str) -> dict[str, Any]:
    ws.send_text(message if isinstance(message, str) else json.dumps(message))
    reply: dict[str, Any] = json.loads(ws.receive_text())
    return reply


def test_no_subprotocol_gets_no_greeting_and_upstream_shapes() -> None:
    with client_for() as client, client.websocket_connect("/ws") as ws:
        assert ws.accepted_subprotocol is None
        reply = call(ws, {"type": "reset", "data": {"seed": 1, "episode_id": "e"}})
        assert reply == {
            "type": "observation",
            "data": {
                "observation": {
                    "echoed_message": "Echo environment ready!",
                    "message_length": 0,
                    "metadata": {},
                },
                "reward": 0.0,
                "done": False,
            },
        }
        reply = call(ws, {"type": "step", "data": {"message": "abc"}})
        assert reply["data"] == {
            "observation": {"echoed_message": "abc", "message_length": 3, "metadata": {}},
            "reward": 0.3,
            "done": False,
        }
        assert call(ws, {"type": "state"}) == {
            "type": "state",
            "data": {"episode_id": "e", "step_count": 1},
        }


def test_our_subprotocol_still_gets_our_greeting() -> None:
    with client_for() as client, client.websocket_connect("/ws", subprotocols=[SUBPROTOCOL]) as ws:
        assert ws.accepted_subprotocol == SUBPROTOCOL
        assert ws.receive_bytes().startswith(b"\x87\xa4type\xa5hello")


@pytest.mark.parametrize(
    ("frame", "code", "loc"),
    [
        ("{nope", "INVALID_JSON", None),
        ({"type": "jump"}, "UNKNOWN_TYPE", None),
        ({"type": "get_state", "id": 1}, "UNKNOWN_TYPE", None),  # our dialect's tag is unknown
        ({"data": {}}, "VALIDATION_ERROR", ["type"]),
        ({"type": "reset", "data": {}, "id": 1}, "VALIDATION_ERROR", ["id"]),
        ({"type": "step", "data": {"message": 7}}, "VALIDATION_ERROR", ["data", "message"]),
        ({"type": "step", "data": {}}, "VALIDATION_ERROR", ["data", "message"]),
        ({"type": "step"}, "VALIDATION_ERROR", ["data"]),
        ({"type": "reset", "data": {"seed": "x"}}, "VALIDATION_ERROR", ["data", "seed"]),
        ({"type": "reset", "data": {"episode_id": 5}}, "VALIDATION_ERROR", ["data", "episode_id"]),
        ("[1, 2]", "VALIDATION_ERROR", []),
    ],
)
def test_bad_frames_get_upstreams_codes_and_the_session_survives(
    frame: Any, code: str, loc: list[str] | None
) -> None:
    with client_for() as client, client.websocket_connect("/ws") as ws:
        reply = call(ws, frame)
        assert reply["type"] == "error"
        assert reply["data"]["code"] == code
        if loc is not None:
            assert reply["data"]["errors"][0]["loc"] == loc
        assert call(ws, {"type": "reset", "data": {}})["type"] == "observation"


def test_step_and_state_before_reset_go_to_the_env_as_upstream_does() -> None:
    with client_for() as client, client.websocket_connect("/ws") as ws:
        assert call(ws, {"type": "step", "data": {"message": "hi"}})["type"] == "observation"
        assert call(ws, {"type": "state"})["data"]["step_count"] == 1
    with client_for(NeedsResetEnvironment) as client, client.websocket_connect("/ws") as ws:
        reply = call(ws, {"type": "step", "data": {"message": "hi"}})
        assert reply["data"] == {"message": "RuntimeError: reset first", "code": "EXECUTION_ERROR"}
        assert call(ws, {"type": "reset", "data": {}})["type"] == "observation"


def test_env_exception_is_execution_error_and_the_session_survives() -> None:
    with client_for(FlakyEchoEnvironment) as client, client.websocket_connect("/ws") as ws:
        call(ws, {"type": "reset", "data": {}})
        reply = call(ws, {"type": "step", "data": {"message": "boom"}})
        assert reply["data"]["code"] == "EXECUTION_ERROR"
        assert "the env blew up" in reply["data"]["message"]
        assert call(ws, {"type": "step", "data": {"message": "ok"}})["type"] == "observation"


def test_step_over_the_time_limit_is_execution_error_then_1011() -> None:
    with client_for(FlakyEchoEnvironment, step_timeout=0.2) as client:
        with client.websocket_connect("/ws") as ws:
            call(ws, {"type": "reset", "data": {}})
            reply = call(ws, {"type": "step", "data": {"message": "sleep"}})
            assert reply["data"]["code"] == "EXECUTION_ERROR"
            assert "step limit" in reply["data"]["message"]
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
            assert closed.value.code == 1011


def test_close_gets_no_reply_and_closes_1000() -> None:
    with client_for() as client, client.websocket_connect("/ws") as ws:
        ws.send_text(json.dumps({"type": "close"}))
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 1000


def test_a_binary_frame_is_a_session_error_and_closes_1003() -> None:
    with client_for() as client, client.websocket_connect("/ws") as ws:
        ws.send_bytes(b"\x81\xa4type\xa5reset")
        reply = json.loads(ws.receive_text())
        assert reply["data"]["code"] == "SESSION_ERROR"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == 1003


def test_a_full_server_answers_capacity_reached_then_1013() -> None:
    with client_for(max_sessions=1) as client, client.websocket_connect("/ws") as first:
        call(first, {"type": "reset", "data": {}})
        with client.websocket_connect("/ws") as second:
            reply = json.loads(second.receive_text())
            assert reply["data"]["code"] == "CAPACITY_REACHED"
            assert (reply["data"]["active_sessions"], reply["data"]["max_sessions"]) == (1, 1)
            with pytest.raises(WebSocketDisconnect) as closed:
                second.receive_text()
            assert closed.value.code == 1013


def test_an_env_that_cannot_be_created_is_a_factory_error() -> None:
    with client_for(BrokenFactoryEnvironment) as client, client.websocket_connect("/ws") as ws:
        reply = json.loads(ws.receive_text())
        assert reply["data"] == {"message": "OSError: no GPU here", "code": "FACTORY_ERROR"}


def test_the_token_is_checked_at_the_handshake_in_both_dialects() -> None:
    with client_for(token="s3cret") as client:
        for subprotocols in ([], [SUBPROTOCOL]):
            with pytest.raises(WebSocketDisconnect) as refused:
                with client.websocket_connect("/ws", subprotocols=subprotocols):
                    pass
            assert refused.value.code == 1008  # HTTP 403 on a real server
        headers = {"Authorization": "Bearer s3cret"}
        with client.websocket_connect("/ws", headers=headers) as ws:
            assert call(ws, {"type": "reset", "data": {}})["type"] == "observation"


def test_a_websocket_on_an_unknown_path_is_404_not_403() -> None:
    from starlette.testclient import WebSocketDenialResponse

    with client_for() as client:
        with pytest.raises(WebSocketDenialResponse) as denied:
            with client.websocket_connect("/nope"):
                pass
        assert denied.value.status_code == 404
        assert "/nope" in denied.value.text


class Counted(State):
    visits: int = 0


class CountingEnv(Environment[EchoAction, EchoObservation, Counted]):
    def __init__(self) -> None:
        self._state = Counted()

    def reset(self, seed: int | None = None, episode_id: str | None = None, **options: Any) -> Any:
        return EchoObservation()

    def step(self, action: EchoAction) -> EchoObservation:
        return EchoObservation()

    @property
    def state(self) -> Counted:
        return self._state


def test_state_type_fields_are_all_present() -> None:
    with client_for(CountingEnv) as client, client.websocket_connect("/ws") as ws:
        # defaults included, as pydantic's model_dump gives them (ours omit them on our dialect)
        assert call(ws, {"type": "state"})["data"] == {
            "episode_id": None,
            "step_count": 0,
            "visits": 0,
        }


upstream_frames = st.one_of(
    st.text(max_size=200),
    st.builds(
        json.dumps,
        st.fixed_dictionaries(
            {
                "type": st.sampled_from(["reset", "step", "state", "close", "mcp"])
                | st.text(max_size=6)
            },
            optional={
                "data": st.none()
                | st.integers()
                | st.text(max_size=10)
                | st.dictionaries(
                    st.sampled_from(["message", "seed", "episode_id", "metadata", "x"]),
                    st.none() | st.integers() | st.text(max_size=10) | st.lists(st.integers()),
                    max_size=4,
                ),
                "id": st.integers(),
            },
        ),
    ),
)


@settings(max_examples=150, deadline=None)
@given(frame=upstream_frames)
def test_any_text_frame_gets_one_well_formed_reply_and_the_session_survives(frame: str) -> None:
    with client_for() as client, client.websocket_connect("/ws") as ws:
        ws.send_text(frame)
        try:
            reply = json.loads(ws.receive_text())
        except WebSocketDisconnect as closed:  # only a well-formed close is acceptable
            assert closed.code == 1000 and json.loads(frame)["type"] == "close"
            return
        assert reply["type"] in ("observation", "state", "mcp", "error")
        if reply["type"] == "error":
            assert reply["data"]["code"] in {
                "INVALID_JSON",
                "UNKNOWN_TYPE",
                "VALIDATION_ERROR",
                "EXECUTION_ERROR",
            }
            assert reply["data"]["message"]
        assert call(ws, {"type": "reset", "data": {}})["type"] == "observation"
