"""The wire protocol: message types and their codec. No I/O happens here.

One WebSocket connection is one session. The server greets with :class:`Hello`; the client then
sends requests (:class:`Reset`, :class:`Step`, :class:`GetState`, :class:`Fork`, :class:`Close`),
each carrying an integer ``id`` that its reply (:class:`Result`, :class:`StateReply`,
:class:`ForkTickets`, :class:`Goodbye` or :class:`Error`) echoes. Binary frames carry msgpack,
text frames JSON, both from the same Structs, so ``websocat`` can drive an env while the SDK
always uses msgpack.

Each direction is a msgspec tagged union (``"type"`` field). ``Step``, ``Result`` and
``StateReply`` are generic: a :class:`Codec` built for one env decodes actions, observations and
states straight into that env's own Struct types, with no dict round trip.

Tools: :class:`ListTools` is answered by :class:`ToolList` (the env's tools with their JSON
Schemas, at any time); :class:`CallTool` runs one tool as a step of the episode (after a reset,
as ``step``) and is answered by :class:`ToolReply`, whose observation is a
:class:`~openenv.tools.ToolResult` with the step's reward and done flag. Arguments that do not
fit the tool's schema are ``invalid_action`` (the message names the argument); an env without
tools lists none.

Forking: :class:`Fork` copies the session's env (its current state) into ``count`` new envs
and answers with one single-use ticket per copy. A new connection to the same server presents a
ticket instead of the bearer token, in the handshake's ``Authorization: Fork <ticket>`` header
(:func:`fork_authorization`), and becomes a session of that copy; its :class:`Hello` names the
parent in ``forked_from``. A ticket is refused (HTTP 403) when used before, expired, or minted by
a server with another token.

Tracing: a request may carry ``trace``, the W3C trace context of the client's span
(``traceparent``, ``tracestate``) as OpenTelemetry's propagators write it, so that the server's
span of that request joins the client's trace. It is sent only while the client traces, and
left out of the frame otherwise (``omit_defaults``): untraced requests are byte for byte what
they were. Servers that predate it ignore it, as msgspec ignores unknown fields.

Arrays: a numpy array (or numpy scalar) anywhere in a message travels in a binary frame as a
msgpack extension (:data:`ARRAY_EXT`, :data:`SCALAR_EXT`): its dtype, its shape and its raw
bytes, decoded with ``np.frombuffer`` straight over the received frame (a view, no copy). In a
JSON (text) frame it becomes nested lists, as upstream's dialect sends it. numpy is imported
only when an array arrives: messages without arrays never touch it.

Schema evolution rule: every field added later must have a default.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from enum import IntEnum
from typing import Any, Generic, TypeVar

import msgspec

from openenv.exceptions import ErrorCode
from openenv.tools import Tool, ToolResult
from openenv.types import Observation, State

__all__ = [
    "ARRAY_EXT",
    "FORK_SCHEME",
    "PROTOCOL_VERSION",
    "REQUEST_KINDS",
    "SCALAR_EXT",
    "SUBPROTOCOL",
    "CallTool",
    "Close",
    "CloseCode",
    "Codec",
    "Error",
    "ErrorCode",
    "Fork",
    "ForkTickets",
    "FrameError",
    "GetState",
    "Goodbye",
    "Hello",
    "ListTools",
    "Reset",
    "Result",
    "StateReply",
    "Step",
    "ToolList",
    "ToolReply",
    "decode_array",
    "encode_array",
    "fork_authorization",
    "json_default",
    "reply_type",
    "request_type",
]

#: 2: ``result`` carries reward and done inside the observation only.
PROTOCOL_VERSION = 2
#: The WebSocket subprotocol our SDK asks for at the handshake (it names the dialect: greeting,
#: ids, msgpack/JSON; ``Hello.protocol`` carries the message version). A client that asks for
#: none gets upstream OpenEnv's JSON dialect on the same route instead (``openenv.upstream``).
SUBPROTOCOL = "openenv.v1"

ActT = TypeVar("ActT")
ObsT = TypeVar("ObsT", bound=Observation)
StateT = TypeVar("StateT", bound=State)


class CloseCode(IntEnum):
    """The WebSocket close codes a server ends a session with."""

    NORMAL = 1000  # the client sent close; the server said goodbye
    UNSUPPORTED_DATA = 1003  # upstream dialect: a binary frame (after a SESSION_ERROR)
    POLICY_VIOLATION = 1008  # refused at the handshake (bad token): HTTP 403 before accept
    TOO_BIG = 1009  # a frame over the server's size limit
    INTERNAL_ERROR = 1011  # the env exceeded the step time limit (its state is unknown), or
    # (upstream dialect) the env could not be created
    SERVICE_RESTART = 1012  # the server is shutting down (uvicorn sends it on exit)
    TRY_AGAIN_LATER = 1013  # the server is full (after a ``capacity`` error)


class _Message(msgspec.Struct, tag_field="type", omit_defaults=True):
    pass


# Requests, client -> server.


class Reset(_Message, tag="reset"):
    """Start a new episode."""

    id: int
    seed: int | None = None
    episode_id: str | None = None
    options: dict[str, Any] = {}
    trace: dict[str, str] | None = None  # trace context (see "Tracing" above)


class Step(_Message, Generic[ActT], tag="step"):
    """Apply one action."""

    id: int
    action: ActT
    trace: dict[str, str] | None = None  # trace context (see "Tracing" above)


class GetState(_Message, tag="get_state"):
    """Ask for the episode's state."""

    id: int
    trace: dict[str, str] | None = None  # trace context (see "Tracing" above)


class Fork(_Message, tag="fork"):
    """Copy this session's env, as it is now, into ``count`` new sessions-to-be.

    Answered by :class:`ForkTickets`; each copy counts against the server's session limit from
    now on (``capacity`` when they do not all fit, ``not_supported`` when the env cannot copy
    itself).
    """

    id: int
    count: int = 1
    trace: dict[str, str] | None = None  # trace context (see "Tracing" above)


class ListTools(_Message, tag="list_tools"):
    """Ask for the env's tools (no reset needed)."""

    id: int
    trace: dict[str, str] | None = None  # trace context (see "Tracing" above)


class CallTool(_Message, tag="call_tool"):
    """Call one of the env's tools, as a step: ``arguments`` is validated against the tool's
    input schema before it runs."""

    id: int
    name: str
    arguments: dict[str, Any] = {}
    trace: dict[str, str] | None = None  # trace context (see "Tracing" above)


class Close(_Message, tag="close"):
    """End the session; the server answers :class:`Goodbye` and closes the connection."""

    id: int


# Replies, server -> client.


#: The kind of each request, as metrics and spans name it on both ends.
REQUEST_KINDS: dict[type[_Message], str] = {
    Reset: "reset",
    Step: "step",
    GetState: "state",
    ListTools: "tool",
    CallTool: "tool",
    Fork: "fork",
    Close: "close",
}


class Hello(_Message, tag="hello"):
    """The server's greeting, sent once when the session opens."""

    protocol: int
    env: str
    session_id: str
    action_schema: dict[str, Any] = {}
    observation_schema: dict[str, Any] = {}
    state_schema: dict[str, Any] = {}
    forked_from: str | None = None  # the parent's session id, for a session opened by a ticket


class Result(_Message, Generic[ObsT], tag="result"):
    """The observation produced by a reset or a step; its ``reward`` and ``done`` fields are
    the step's reward and done flag (they travel once, inside the observation)."""

    id: int
    observation: ObsT


class StateReply(_Message, Generic[StateT], tag="state"):
    """The episode's state."""

    id: int
    state: StateT


class ForkTickets(_Message, tag="fork_tickets"):
    """Answers :class:`Fork`: one ticket per copy, each valid once for ``expires_in`` seconds."""

    id: int
    tickets: list[str] = []
    expires_in: float = 0.0


class ToolList(_Message, tag="tools"):
    """Answers :class:`ListTools`."""

    id: int
    tools: list[Tool] = []


class ToolReply(_Message, tag="tool_result"):
    """Answers :class:`CallTool`: the tool's result (or error), reward and done."""

    id: int
    observation: ToolResult


class Goodbye(_Message, tag="goodbye"):
    """Acknowledges :class:`Close`."""

    id: int


class Error(_Message, tag="error"):
    """A request failed; ``code`` is one of :class:`ErrorCode`. ``id`` is None when unknown."""

    code: str
    message: str
    id: int | None = None


def request_type(action_type: type[Any]) -> Any:
    """The union of requests a server for ``action_type`` decodes."""
    return Reset | Step[action_type] | GetState | ListTools | CallTool | Fork | Close  # type: ignore[valid-type]


def reply_type(observation_type: type[Any], state_type: type[Any]) -> Any:
    """The union of replies a client of an env with these types decodes."""
    return (
        Hello
        | Result[observation_type]  # type: ignore[valid-type]
        | StateReply[state_type]  # type: ignore[valid-type]
        | ToolList
        | ToolReply
        | ForkTickets
        | Goodbye
        | Error
    )


#: The ``Authorization`` scheme of a handshake that opens a forked session with a ticket.
FORK_SCHEME = "Fork"


def fork_authorization(ticket: str) -> str:
    """The ``Authorization`` header value presenting ``ticket``."""
    return f"{FORK_SCHEME} {ticket}"


class FrameError(Exception):
    """A frame could not be decoded into a message.

    Attributes:
        code: the :class:`ErrorCode` a server answers with.
        request_id: the frame's ``id`` when it could still be read, else None.
    """

    def __init__(self, code: ErrorCode, message: str, request_id: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


#: The msgpack extension type codes of a numpy array and of a numpy scalar.
ARRAY_EXT = 1
SCALAR_EXT = 2
# Payload: dtype string length (1 byte), dtype string (numpy's ``dtype.str``: byte order,
# kind, size), ndim (1 byte), the shape as ndim little-endian uint64s, then the raw C-order bytes.
_SIZE = struct.Struct("<Q")
_KINDS = frozenset("biufc")  # bool, ints, uints, floats, complex: plain bytes, nothing else
_MAX_NDIM = 32  # numpy's own limit is 64; nothing real needs more


def encode_array(array: Any) -> bytes:
    """The extension payload of a numpy array (any memory layout; sent in C order).

    Raises:
        TypeError: its dtype is not plain numbers or booleans (objects, strings, records).
    """
    dtype = array.dtype
    if dtype.kind not in _KINDS:
        raise TypeError(f"cannot send a numpy array of dtype {dtype}: only numbers and booleans")
    code = dtype.str.encode()
    header = bytes((len(code),)) + code + bytes((array.ndim,))
    header += b"".join(_SIZE.pack(n) for n in array.shape)
    # One copy into the payload; msgspec copies it once more into the frame.
    payload: bytes = header + (array.data if array.flags.c_contiguous else array.tobytes())
    return payload


def decode_array(data: memoryview) -> Any:
    """The numpy array of an extension payload: a view over ``data`` (no copy; writable only
    if ``data``'s buffer is).

    Raises:
        ValueError: the payload is malformed, or its dtype is not plain numbers or booleans.
    """
    import numpy as np  # only once an array arrives

    try:
        length = data[0]
        dtype = np.dtype(bytes(data[1 : 1 + length]).decode("ascii"))
        ndim = data[1 + length]
        start = 2 + length
        shape = tuple(_SIZE.unpack_from(data, start + 8 * i)[0] for i in range(ndim))
    except (IndexError, TypeError, UnicodeDecodeError, struct.error) as exc:
        raise ValueError(f"malformed array extension: {exc}") from None
    start += 8 * ndim
    if dtype.kind not in _KINDS or ndim > _MAX_NDIM:
        raise ValueError(f"array extension of dtype {dtype}, ndim {ndim}: not allowed")
    count = 1
    for n in shape:
        count *= n
    if count * dtype.itemsize != len(data) - start:
        raise ValueError(
            f"array extension of shape {shape} and dtype {dtype} holds "
            f"{len(data) - start} bytes, not {count * dtype.itemsize}"
        )
    return np.frombuffer(data, dtype, count, start).reshape(shape)


def _enc_hook(value: Any) -> Any:
    numpy = sys.modules.get("numpy")  # an array exists only if numpy was imported
    if numpy is not None:
        if isinstance(value, numpy.ndarray):
            return msgspec.msgpack.Ext(ARRAY_EXT, encode_array(value))
        if isinstance(value, numpy.generic):
            return msgspec.msgpack.Ext(SCALAR_EXT, encode_array(numpy.asarray(value)))
    raise TypeError(f"cannot encode a {type(value).__qualname__} in a message")


def _ext_hook(code: int, data: memoryview) -> Any:
    if code == ARRAY_EXT:
        return decode_array(data)
    if code == SCALAR_EXT:
        return decode_array(data)[()]
    raise ValueError(f"unknown msgpack extension type {code}")


def json_default(value: Any) -> Any:
    """A JSON encoder's ``enc_hook``: numpy arrays as nested lists and numpy scalars as numbers,
    the way upstream's JSON dialect sends them."""
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray | numpy.generic):
        return value.tolist()
    raise TypeError(f"cannot encode a {type(value).__qualname__} in a message")


class _Header(msgspec.Struct):
    """The part of a malformed request still worth reading: its id, to address the error."""

    id: int | None = None


_ACTION_PATH = "`$.action"
_MAX_DETAIL = 300


class Codec:
    """Encodes any message and decodes one direction's frames into typed messages.

    Encoders and decoders are built once and reused: decoding a frame is a single msgspec call.

    Args:
        incoming: the union type this side decodes, from :func:`request_type` or
            :func:`reply_type`.
    """

    def __init__(self, incoming: Any) -> None:
        # The hooks run only for what msgspec cannot encode or decode itself (numpy values):
        # messages without arrays take msgspec's own path at its own speed.
        self._msgpack_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(
            incoming, ext_hook=_ext_hook
        )
        self._json_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(incoming)
        self._msgpack_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
        self._json_encoder = msgspec.json.Encoder(enc_hook=json_default)
        self._msgpack_header = msgspec.msgpack.Decoder(_Header)
        self._json_header = msgspec.json.Decoder(_Header)

    def encode(self, message: msgspec.Struct) -> bytes:
        """Encode as msgpack, for a binary frame."""
        return self._msgpack_encoder.encode(message)

    @property
    def binary_codec(self) -> tuple[Callable[[bytes], Any], Callable[[Any], bytes]]:
        """The bare msgpack decode and encode functions, for hot paths: one call each, and
        msgspec's own errors (a hot path falls back to :meth:`decode` to report them)."""
        return self._msgpack_decoder.decode, self._msgpack_encoder.encode

    def encode_text(self, message: msgspec.Struct) -> str:
        """Encode as JSON, for a text frame."""
        return self._json_encoder.encode(message).decode()

    def decode(self, frame: bytes | str) -> Any:
        """Decode a binary (msgpack) or text (JSON) frame.

        Raises:
            FrameError: with ``invalid_action`` when only the action failed validation, else
                ``invalid_message``; ``request_id`` is set when the frame's id was readable.
        """
        try:
            if isinstance(frame, str):
                return self._json_decoder.decode(frame)
            return self._msgpack_decoder.decode(frame)
        # msgspec raises DecodeError (a ValueError) for most bad input, but UnicodeDecodeError
        # (also a ValueError) for invalid UTF-8 in a string, and RecursionError when nested
        # too deeply: all of them are the sender's fault, none may escape.
        except (ValueError, RecursionError) as exc:
            detail = str(exc)[:_MAX_DETAIL]
            if isinstance(exc, msgspec.ValidationError) and _ACTION_PATH in detail:
                code = ErrorCode.INVALID_ACTION
            else:
                code = ErrorCode.INVALID_MESSAGE
            raise FrameError(code, detail, self._read_id(frame)) from exc

    def _read_id(self, frame: bytes | str) -> int | None:
        try:
            if isinstance(frame, str):
                return self._json_header.decode(frame).id
            return self._msgpack_header.decode(frame).id
        except (ValueError, RecursionError):
            return None
