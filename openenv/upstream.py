"""Upstream OpenEnv's wire shapes (``openenv-core`` 0.3.0 and ``openenv`` 0.10): its WebSocket
JSON dialect and the bodies of its HTTP routes. No I/O happens here; both our server and our
client use these.

Upstream's WebSocket dialect is JSON text frames in lockstep, with no greeting and no ids:

- requests ``{"type":"reset","data":{seed?, episode_id?, ...}}``, ``{"type":"step","data":
  {<action fields>}}``, ``{"type":"state"}``, ``{"type":"close"}``, and (0.10)
  ``{"type":"mcp","data":<JSON-RPC 2.0 request>}``; unknown envelope fields are refused
  (upstream's ``extra="forbid"``);
- replies ``{"type":"observation","data":{"observation":{...},"reward":r,"done":b}}`` (the
  observation without its ``reward`` and ``done``; 0.10 keeps ``metadata`` in it and repeats
  it at the top level when not empty), ``{"type":"state","data":{...}}``, ``{"type":"mcp",
  "data":<JSON-RPC 2.0 response>}`` and ``{"type":"error","data":{"message":..., "code":...,
  "errors"?: [...]}}``.
- tool calls (0.10) are steps whose action is ``{"type":"call_tool","tool_name":...,
  "arguments":{...}}`` or ``{"type":"list_tools"}``, answered with an observation carrying
  ``tool_name``, ``result`` and ``error`` (``{"error_type","message"}``), or ``tools``.

The HTTP bodies of ``/reset`` and ``/step`` answer with the same ``data`` shape as the
observation reply, with ``metadata`` always at the top level (null when empty).
``docs/protocol.md`` describes it all for implementers.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Generic, TypeVar

import msgspec

from openenv.types import Observation, State

__all__ = [
    "RESERVED_OBSERVATION_FIELDS",
    "UpCallTool",
    "UpClose",
    "UpError",
    "UpErrorData",
    "UpListTools",
    "UpMcp",
    "UpMcpReply",
    "UpObservation",
    "UpObservationData",
    "UpReset",
    "UpState",
    "UpStateReply",
    "UpStep",
    "UpToolStep",
    "UpstreamCode",
    "observation_data",
    "public_fields",
    "reply_type",
    "request_type",
    "state_data",
    "validation_errors",
]

ActT = TypeVar("ActT")
ObsT = TypeVar("ObsT")
StateT = TypeVar("StateT")

#: Observation fields that travel beside the others: upstream lifts reward and done out of
#: ``observation``; a tool result carries all three as the step's own.
RESERVED_OBSERVATION_FIELDS = frozenset({"reward", "done", "metadata"})
_LIFTED = frozenset({"reward", "done"})


class UpstreamCode(StrEnum):
    """Upstream's error codes (its ``WSErrorCode``)."""

    INVALID_JSON = "INVALID_JSON"  # the frame is not JSON
    UNKNOWN_TYPE = "UNKNOWN_TYPE"  # no such message type
    VALIDATION_ERROR = "VALIDATION_ERROR"  # a malformed message or an action that does not fit
    EXECUTION_ERROR = "EXECUTION_ERROR"  # the environment raised
    CAPACITY_REACHED = "CAPACITY_REACHED"  # the server is full; the connection closes
    FACTORY_ERROR = "FACTORY_ERROR"  # the environment could not be created
    SESSION_ERROR = "SESSION_ERROR"  # the session broke (e.g. a binary frame); it closes


# Requests, client -> server. The envelope refuses unknown fields, as upstream's does.


class _Request(msgspec.Struct, tag_field="type", forbid_unknown_fields=True):
    pass


class UpReset(_Request, tag="reset"):
    """Start an episode; ``data`` holds ``seed``, ``episode_id`` and any other reset keywords."""

    data: dict[str, Any] = {}


class UpStep(_Request, Generic[ActT], tag="step"):
    """Apply the action in ``data``."""

    data: ActT


class UpState(_Request, tag="state"):
    """Ask for the episode's state."""


class UpClose(_Request, tag="close"):
    """End the session: no reply, the server closes the connection (1000)."""


class UpMcp(_Request, tag="mcp"):
    """A JSON-RPC 2.0 request (MCP's ``tools/list``, ``tools/call``) for this session's env."""

    data: Any = None


class _ToolAction(msgspec.Struct, tag_field="type"):
    pass


class UpListTools(_ToolAction, tag="list_tools"):
    """The step action listing the env's tools (upstream's ``ListToolsAction``)."""

    metadata: dict[str, Any] = {}


class UpCallTool(_ToolAction, tag="call_tool"):
    """The step action calling a tool (upstream's ``CallToolAction``); ``arguments`` may come
    as a JSON string, as upstream's web interface sends them."""

    tool_name: str
    arguments: dict[str, Any] | str = {}
    metadata: dict[str, Any] = {}


class UpToolStep(_Request, tag="step"):
    """A step whose action is a tool action (tried first on envs with tools)."""

    data: UpListTools | UpCallTool


# Replies, server -> client. Every field is always present (upstream sends nulls).


class _Reply(msgspec.Struct, tag_field="type"):
    pass


class UpObservationData(msgspec.Struct, Generic[ObsT]):
    """An observation with its reward and done flag lifted out (also an HTTP response body)."""

    observation: ObsT
    reward: float | bool | None = None  # upstream allows a bool reward; read it as 0.0 / 1.0
    done: bool = False
    metadata: dict[str, Any] | None = None  # 0.10: also inside the observation


class UpObservation(_Reply, Generic[ObsT], tag="observation"):
    """The reply to a reset or a step."""

    data: UpObservationData[ObsT]


class UpStateReply(_Reply, Generic[StateT], tag="state"):
    """The reply to a state request."""

    data: StateT


class UpErrorData(msgspec.Struct):
    """What an error reply carries; upstream adds more fields to some codes (ignored here)."""

    message: str = ""
    code: str = ""
    errors: list[dict[str, Any]] = []

    def describe(self) -> str:
        """The message, then each error's field path and text, then the code."""
        parts = [self.message]
        for error in self.errors:
            loc = ".".join(str(part) for part in error.get("loc", ()))
            parts.append(f"{loc}: {error.get('msg', '')}" if loc else str(error.get("msg", "")))
        text = "; ".join(part for part in parts if part)
        return f"{text} ({self.code})" if self.code else text


class UpError(_Reply, tag="error"):
    """A request failed (no id: it answers the request in flight)."""

    data: UpErrorData


class UpMcpReply(_Reply, tag="mcp"):
    """The reply to :class:`UpMcp`: a JSON-RPC 2.0 response."""

    data: dict[str, Any] = {}


def request_type(action_type: type[Any]) -> Any:
    """The union of upstream requests a server for ``action_type`` decodes."""
    return UpReset | UpStep[action_type] | UpState | UpClose | UpMcp  # type: ignore[valid-type]


def reply_type(observation_type: type[Any], state_type: type[Any]) -> Any:
    """The union of upstream replies a client of an env with these types decodes."""
    return (
        UpObservation[observation_type]  # type: ignore[valid-type]
        | UpStateReply[state_type]  # type: ignore[valid-type]
        | UpMcpReply
        | UpError
    )


_FIELDS: dict[tuple[type[Any], frozenset[str]], tuple[str, ...]] = {}


def public_fields(value: msgspec.Struct, leave_out: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Every field of ``value`` (defaults included, as pydantic's ``model_dump`` gives them),
    without ``leave_out``. Nested values stay Structs: the encoder writes them."""
    key = (type(value), leave_out)
    names = _FIELDS.get(key)
    if names is None:
        names = tuple(n for n in value.__struct_fields__ if n not in leave_out)
        _FIELDS[key] = names
    return {name: getattr(value, name) for name in names}


def observation_data(observation: Observation, http: bool = False) -> dict[str, Any]:
    """``observation`` in upstream's shape: its fields (``metadata`` included, as 0.10 has
    them), then its reward and done flag, and its metadata again at the top level: over HTTP
    always (null when empty), on the WebSocket only when not empty (upstream 0.10's rule)."""
    data: dict[str, Any] = {
        "observation": public_fields(observation, _LIFTED),
        "reward": observation.reward,
        "done": observation.done,
    }
    metadata = observation.metadata
    if metadata or http:
        data["metadata"] = metadata or None
    return data


def state_data(state: State) -> dict[str, Any]:
    """``state`` with every field, as upstream's ``model_dump`` gives it."""
    return public_fields(state)


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_NAMED = re.compile(r"^Object (?:missing required|contains unknown) field `(?P<name>[^`]+)`$")
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def validation_errors(exc: Exception, prefix: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    """msgspec's validation error as pydantic-style entries: ``[{"type","loc","msg"}]``.

    ``loc`` is the path to the offending field (``prefix`` first), so a 422 names the field the
    way upstream's FastAPI server does, e.g. ``["body", "action", "message"]``.
    """
    match = _AT.match(str(exc))
    assert match is not None  # the pattern matches any string
    message, path = match["msg"], match["path"] or ""
    loc: list[str | int] = list(prefix)
    for name, index in _PATH_PART.findall(path):
        loc.append(name if name else int(index))
    kind = "value_error"
    named = _NAMED.match(message)
    if named is not None:
        loc.append(named["name"])
        kind = "missing" if "missing" in message else "extra_forbidden"
    elif message.startswith("Expected"):
        kind = "type_error"
    return [{"type": kind, "loc": loc, "msg": message}]
