"""The codec with bytes alone: round trips, typed decoding and garbage input."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.echo_env.models import EchoAction, EchoObservation
from openenv.protocol import (
    Close,
    Codec,
    Error,
    ErrorCode,
    FrameError,
    GetState,
    Hello,
    Reset,
    Result,
    StateReply,
    Step,
    reply_type,
    request_type,
)
from openenv.types import State

server_codec = Codec(request_type(EchoAction))
client_codec = Codec(reply_type(EchoObservation, State))

ids = st.integers(min_value=0, max_value=2**63 - 1)
texts = st.text(max_size=200)
requests = st.one_of(
    st.builds(Reset, id=ids, seed=st.none() | st.integers(0, 2**32), episode_id=st.none() | texts),
    st.builds(Step, id=ids, action=st.builds(EchoAction, message=texts)),
    st.builds(GetState, id=ids),
    st.builds(Close, id=ids),
)
observations = st.builds(
    EchoObservation,
    echoed_message=texts,
    message_length=st.integers(0, 10**6),
    reward=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    done=st.booleans(),
)
replies = st.one_of(
    st.builds(Result, id=ids, observation=observations),
    st.builds(
        StateReply,
        id=ids,
        state=st.builds(State, episode_id=st.none() | texts, step_count=st.integers(0, 10**9)),
    ),
    st.builds(Error, code=st.sampled_from(list(ErrorCode)), message=texts, id=st.none() | ids),
    st.builds(Hello, protocol=st.integers(0, 100), env=texts, session_id=texts),
)


@given(requests)
def test_requests_round_trip_in_binary_and_text_frames(request: object) -> None:
    assert server_codec.decode(server_codec.encode(request)) == request  # type: ignore[arg-type]
    assert server_codec.decode(server_codec.encode_text(request)) == request  # type: ignore[arg-type]


@given(replies)
def test_replies_round_trip_in_binary_and_text_frames(reply: object) -> None:
    assert client_codec.decode(client_codec.encode(reply)) == reply  # type: ignore[arg-type]
    assert client_codec.decode(client_codec.encode_text(reply)) == reply  # type: ignore[arg-type]


def test_actions_decode_into_the_envs_own_type() -> None:
    frame = msgspec.msgpack.encode({"type": "step", "id": 7, "action": {"message": "hi"}})
    request = server_codec.decode(frame)
    assert isinstance(request, Step)
    assert type(request.action) is EchoAction
    assert request.action.message == "hi"


def _decodes_only_to_a_real_request(frame: bytes | str) -> None:
    """Garbage either fails with a FrameError, or really was a well-formed request: then it is
    one of the request types and survives a round trip unchanged."""
    try:
        request = server_codec.decode(frame)
    except FrameError as exc:
        assert exc.code in (ErrorCode.INVALID_MESSAGE, ErrorCode.INVALID_ACTION)
        return
    assert isinstance(request, Reset | Step | GetState | Close)
    if isinstance(request, Step):
        assert type(request.action) is EchoAction
    assert server_codec.decode(server_codec.encode(request)) == request


@settings(max_examples=300)
@given(st.binary(max_size=512))
def test_garbage_bytes_raise_frame_error_only(frame: bytes) -> None:
    _decodes_only_to_a_real_request(frame)


@settings(max_examples=300)
@given(st.text(max_size=512))
def test_garbage_text_raises_frame_error_only(frame: str) -> None:
    _decodes_only_to_a_real_request(frame)


@settings(max_examples=200)
@given(requests, st.data())
def test_corrupted_real_frames_raise_frame_error_or_decode_to_a_real_request(
    request: object, data: st.DataObject
) -> None:
    frame = bytearray(server_codec.encode(request))  # type: ignore[arg-type]
    position = data.draw(st.integers(0, len(frame) - 1))
    frame[position] = data.draw(st.integers(0, 255))
    _decodes_only_to_a_real_request(bytes(frame))


def test_unknown_type_is_invalid_message_and_keeps_the_id() -> None:
    with pytest.raises(FrameError) as caught:
        server_codec.decode('{"type": "jump", "id": 12}')
    assert caught.value.code == ErrorCode.INVALID_MESSAGE
    assert caught.value.request_id == 12
    assert "jump" in caught.value.message


def test_wrong_action_field_type_is_invalid_action_naming_the_field() -> None:
    frame = msgspec.msgpack.encode({"type": "step", "id": 3, "action": {"message": 5}})
    with pytest.raises(FrameError) as caught:
        server_codec.decode(frame)
    assert caught.value.code == ErrorCode.INVALID_ACTION
    assert caught.value.request_id == 3
    assert "$.action.message" in caught.value.message


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    frame = b"\x91" * 100_000 + b"\xc0"
    with pytest.raises(FrameError):
        server_codec.decode(frame)


def test_truncated_msgpack_is_invalid_message() -> None:
    frame = server_codec.encode(Step(id=1, action=EchoAction(message="hello")))
    with pytest.raises(FrameError) as caught:
        server_codec.decode(frame[:-3])
    assert caught.value.code == ErrorCode.INVALID_MESSAGE


def test_defaults_are_omitted_on_the_wire() -> None:
    assert msgspec.msgpack.decode(server_codec.encode(Reset(id=1))) == {"type": "reset", "id": 1}


def test_invalid_utf8_in_a_string_is_invalid_message_not_a_crash() -> None:
    # Found by fuzzing: msgspec raises UnicodeDecodeError, not DecodeError, for this.
    frame = msgspec.msgpack.encode({"type": "step", "id": 4, "action": {"message": "é"}})
    broken = frame.replace("é".encode(), b"\xe9\x41")
    with pytest.raises(FrameError) as caught:
        server_codec.decode(broken)
    assert caught.value.code == ErrorCode.INVALID_MESSAGE
