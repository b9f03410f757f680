"""Upstream OpenEnv's wire shapes (``openenv-core`` 0.3.0): its WebSocket JSON dialect and the
bodies of its HTTP routes. No I/O happens here; both our server and our client use these.

Upstream's WebSocket dialect is JSON text frames in lockstep, with no greeting and no ids:

- requests ``{"type":"reset","data":{seed?, episode_id?, ...}}``, ``{"type":"step","data":
  {<action fields>}}``, ``{"type":"state"}``, ``{"type":"close"}``; unknown envelope fields are
  refused (upstream's ``extra="forbid"``);
- replies ``{"type":"observation","data":{"observation":{...},"reward":r,"done":b}}`` (the
  observation without its ``reward``, ``done`` and ``metadata``), ``{"type":"state","data":
  {...}}`` and ``{"type":"error","data":{"message":..., "code":..., "errors"?: [...]}}``.

The HTTP bodies of ``/reset`` and ``/step`` answer with the same ``data`` shape as the
observation reply. ``docs/protocol.md`` describes it all for implementers.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Generic, TypeVar

import msgspec

from openenv.types import Observation, State

__all__ = [
    "RESERVED_OBSERVATION_FIELDS",
    "UpClose",
    "UpError",
    "UpErrorData",
    "UpObservation",
    "UpObservationData",
    "UpReset",
    "UpState",
    "UpStateReply",
    "UpStep",
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

#: Observation fields upstream lifts out of ``observation`` (reward, done) or leaves out (metadata).
RESERVED_OBSERVATION_FIELDS = frozenset({"reward", "done", "metadata"})


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


# Replies, server -> client. Every field is always present (upstream sends nulls).


class _Reply(msgspec.Struct, tag_field="type"):
    pass


class UpObservationData(msgspec.Struct, Generic[ObsT]):
    """An observation with its reward and done flag lifted out (also an HTTP response body)."""

    observation: ObsT
    reward: float | bool | None = None  # upstream allows a bool reward; read it as 0.0 / 1.0
    done: bool = False


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


def request_type(action_type: type[Any]) -> Any:
    """The union of upstream requests a server for ``action_type`` decodes."""
    return UpReset | UpStep[action_type] | UpState | UpClose  # type: ignore[valid-type]


def reply_type(observation_type: type[Any], state_type: type[Any]) -> Any:
    """The union of upstream replies a client of an env with these types decodes."""
    return UpObservation[observation_type] | UpStateReply[state_type] | UpError  # type: ignore[valid-type]


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


def observation_data(observation: Observation) -> UpObservationData[dict[str, Any]]:
    """``observation`` in upstream's shape: its fields, then its reward and done flag."""
    return UpObservationData(
        observation=public_fields(observation, RESERVED_OBSERVATION_FIELDS),
        reward=observation.reward,
        done=observation.done,
    )


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
