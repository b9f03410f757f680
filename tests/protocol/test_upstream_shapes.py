"""Upstream OpenEnv's shapes and our client's translation of them, from bytes alone."""

from __future__ import annotations

import json

import msgspec
import pytest

from envs.echo_env.models import EchoAction, EchoObservation
from openenv.client.upstream import UpstreamClientCodec
from openenv.protocol import Close, Error, FrameError, GetState, Reset, Result, StateReply, Step
from openenv.types import State
from openenv.upstream import observation_data, state_data, validation_errors


def codec() -> UpstreamClientCodec:
    return UpstreamClientCodec(EchoObservation, State)


def test_requests_become_upstream_envelopes() -> None:
    c = codec()
    assert json.loads(c.encode(Reset(id=1))) == {"type": "reset", "data": {}}
    reset = Reset(id=2, seed=3, episode_id="e", options={"level": 2})
    assert json.loads(c.encode(reset)) == {
        "type": "reset",
        "data": {"level": 2, "seed": 3, "episode_id": "e"},
    }
    step = json.loads(c.encode(Step(id=3, action=EchoAction(message="hi"))))
    assert step == {"type": "step", "data": {"message": "hi"}}
    assert json.loads(c.encode(GetState(id=4))) == {"type": "state"}
    assert json.loads(c.encode(Close(id=5))) == {"type": "close"}


def test_replies_are_addressed_to_the_request_in_flight() -> None:
    c = codec()
    c.encode(Step(id=7, action=EchoAction(message="x")))
    observation = {"echoed_message": "x", "new": 1}  # a field we do not know: ignored
    data = {"observation": observation, "reward": True, "done": True}  # a bool reward: 1.0
    frame = json.dumps({"type": "observation", "data": data})
    reply = c.decode(frame)
    assert isinstance(reply, Result) and reply.id == 7
    assert reply.observation == EchoObservation(echoed_message="x", reward=1.0, done=True)
    c.encode(GetState(id=8))
    state = c.decode('{"type":"state","data":{"episode_id":"e","step_count":2,"extra":0}}')
    assert state == StateReply(id=8, state=State(episode_id="e", step_count=2))


@pytest.mark.parametrize(
    ("request_", "code", "ours"),
    [
        (Step(id=1, action=EchoAction(message="x")), "VALIDATION_ERROR", "invalid_action"),
        (Reset(id=1), "VALIDATION_ERROR", "invalid_message"),
        (Reset(id=1), "EXECUTION_ERROR", "env_error"),
        (Reset(id=1), "CAPACITY_REACHED", "capacity"),
        (Reset(id=1), "INVALID_JSON", "invalid_message"),
        (Reset(id=1), "SOMETHING_NEW", "env_error"),
    ],
)
def test_error_codes_map_to_ours(request_: msgspec.Struct, code: str, ours: str) -> None:
    c = codec()
    c.encode(request_)
    errors = [{"loc": ["data", "message"], "msg": "Field required"}]
    frame = json.dumps({"type": "error", "data": {"message": "m", "code": code, "errors": errors}})
    reply = c.decode(frame)
    assert isinstance(reply, Error)
    assert (reply.code, reply.id) == (ours, 1)
    assert reply.message == f"m; data.message: Field required ({code})"


@pytest.mark.parametrize("frame", [b"\x81", "{", '{"type":"result","id":1}', "[]"])
def test_anything_else_is_a_frame_error(frame: bytes | str) -> None:
    with pytest.raises(FrameError):
        codec().decode(frame)


def test_observation_and_state_data_keep_defaults_and_lift_reward_and_done() -> None:
    # Upstream 0.10's shape: metadata inside the observation, and again at the top level (on
    # the WebSocket only when not empty; over HTTP always, null when empty).
    data = observation_data(EchoObservation(echoed_message="a", reward=0.5, metadata={"k": 1}))
    assert msgspec.to_builtins(data) == {
        "observation": {"echoed_message": "a", "message_length": 0, "metadata": {"k": 1}},
        "reward": 0.5,
        "done": False,
        "metadata": {"k": 1},
    }
    assert observation_data(EchoObservation(echoed_message="a")) == {
        "observation": {"echoed_message": "a", "message_length": 0, "metadata": {}},
        "reward": None,
        "done": False,
    }
    assert observation_data(EchoObservation(echoed_message="a"), http=True)["metadata"] is None
    assert state_data(State()) == {"episode_id": None, "step_count": 0}


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        (b'{"action":{}}', ["body", "action", "message"], "missing"),
        (b'{"action":{"message":1}}', ["body", "action", "message"], "type_error"),
        (b"{}", ["body", "action"], "missing"),
        (b"[", ["body"], "type_error"),
    ],
)
def test_validation_errors_name_the_field(body: bytes, loc: list[str], kind: str) -> None:
    class Body(msgspec.Struct):
        action: EchoAction

    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(body, type=Body)
    [error] = validation_errors(caught.value, ("body",))
    assert (error["loc"], error["type"]) == (loc, kind)
