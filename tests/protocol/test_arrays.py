"""numpy arrays in messages: typed binary in msgpack frames (dtype, shape, raw bytes, decoded
as a view of the frame), nested lists in JSON frames, and numpy left alone when none is sent."""

from __future__ import annotations

import struct
import subprocess
import sys
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from openenv.protocol import (
    ARRAY_EXT,
    Codec,
    ErrorCode,
    FrameError,
    Result,
    Step,
    decode_array,
    encode_array,
    reply_type,
    request_type,
)
from openenv.types import Action, Observation, State


class AnyAction(Action):
    value: Any = None


class AnyObservation(Observation):
    value: Any = None


server = Codec(request_type(AnyAction))
client = Codec(reply_type(AnyObservation, State))

dtypes = st.sampled_from(
    ["bool", "int8", "uint8", ">i2", "<u4", "int64", "float16", "float32", ">f8", "complex64"]
)
arrays = dtypes.flatmap(
    lambda d: hnp.arrays(np.dtype(d), hnp.array_shapes(min_dims=0, max_dims=4, min_side=0))
)


@given(arrays)
def test_an_array_arrives_with_its_dtype_shape_and_bytes(array: np.ndarray[Any, Any]) -> None:
    frame = server.encode(Result(id=1, observation=AnyObservation(value=array)))
    got = client.decode(frame).observation.value
    assert got.dtype == array.dtype and got.shape == array.shape
    assert got.tobytes() == array.tobytes()


def test_the_decoded_array_is_a_view_of_the_frame() -> None:
    array = np.arange(210 * 160 * 3, dtype=np.uint8).reshape(210, 160, 3)
    frame = server.encode(Result(id=1, observation=AnyObservation(value=array)))
    got = client.decode(frame).observation.value
    assert not got.flags.owndata
    assert len(frame) < array.nbytes + 100  # raw bytes, no per-element encoding
    assert np.shares_memory(got, np.frombuffer(frame, np.uint8))


def test_strided_and_nested_arrays_and_numpy_scalars() -> None:
    strided = np.arange(24, dtype=np.float32).reshape(4, 6)[::2, ::3]
    value = {"a": strided, "b": [np.int16(-3), np.bool_(True)], "c": (np.float64(0.5),)}
    got = server.decode(server.encode(Step(id=1, action=AnyAction(value=value)))).action.value
    assert np.array_equal(got["a"], strided) and got["a"].dtype == np.float32
    assert type(got["b"][0]) is np.int16 and got["b"][0] == -3
    assert type(got["b"][1]) is np.bool_
    assert type(got["c"][0]) is np.float64


def test_json_frames_carry_arrays_as_lists() -> None:
    array = np.array([[1, 2], [3, 4]], dtype=np.uint8)
    text = server.encode_text(Step(id=1, action=AnyAction(value=[array, np.float32(0.5)])))
    assert msgspec.json.decode(text)["action"]["value"] == [[[1, 2], [3, 4]], 0.5]


def test_arrays_of_objects_or_strings_are_refused() -> None:
    for array in (np.array(["a"]), np.array([object()], dtype=object)):
        with pytest.raises(TypeError, match="only numbers and booleans"):
            server.encode(Step(id=1, action=AnyAction(value=array)))


def _ext(payload: bytes) -> bytes:
    return server.encode(
        Step(id=7, action=AnyAction(value=msgspec.msgpack.Ext(ARRAY_EXT, payload)))
    )


@pytest.mark.parametrize(
    "payload",
    [
        b"",  # nothing at all
        b"\x03<f4",  # no ndim
        b"\x03<f4\x01" + struct.pack("<Q", 4) + b"\x00" * 15,  # one byte short
        b"\x03<f4\x01" + struct.pack("<Q", 2**60) + b"",  # a shape far beyond the bytes
        b"\x03|O8\x00" + b"\x00" * 8,  # objects
        b"\x03|S4\x00" + b"abcd",  # bytes strings
        b"\x03zzz\x00",  # no dtype at all
        b"\x02\xff\xfe\x00",  # not ASCII
    ],
)
def test_a_malformed_array_is_a_frame_error_with_the_request_id(payload: bytes) -> None:
    with pytest.raises(FrameError) as raised:
        server.decode(_ext(payload))
    assert raised.value.code == ErrorCode.INVALID_MESSAGE
    assert raised.value.request_id == 7


def test_encode_and_decode_array_are_inverse() -> None:
    array = np.arange(6, dtype=">i4").reshape(2, 3)
    got = decode_array(memoryview(encode_array(array)))
    assert got.dtype == np.dtype(">i4") and np.array_equal(got, array)


def test_messages_without_arrays_never_import_numpy() -> None:
    program = """
import sys
from openenv.protocol import Codec, Result, Step, reply_type, request_type
from openenv.types import Action, Observation, State
class A(Action):
    value: object = None
class O(Observation):
    value: object = None
server, client = Codec(request_type(A)), Codec(reply_type(O, State))
frame = server.encode(Result(id=1, observation=O(value={"x": [1, 2.5, "s"]})))
client.decode(frame)
server.decode(client.encode(Step(id=2, action=A(value=[1, 2]))))
server.encode_text(Result(id=1, observation=O(value=3)))
assert "numpy" not in sys.modules, "numpy was imported"
"""
    subprocess.run([sys.executable, "-c", program], check=True, timeout=60)
