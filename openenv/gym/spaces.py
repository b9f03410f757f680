"""Gymnasium spaces from an env's JSON Schemas (the ones the server's greeting carries), with
the conversions between our typed messages and the spaces' values.

How a schema maps (fields of an action or observation, recursively):

=====================================  ===================================================
JSON Schema (from the msgspec type)    Gymnasium space; value
=====================================  ===================================================
``enum`` (``Literal``, ``Enum``)        ``Discrete(len(enum))``; the index of the value
``boolean``                            ``Discrete(2)``; 0 or 1
``integer`` with both bounds           ``Discrete(high - low + 1, start=low)``
``integer`` otherwise                  ``Box((), int64)`` over the bounds given (else int64's)
``number``                             ``Box((), float64)`` over the bounds given (else ±inf)
``array`` of a fixed length of numbers ``Box((n,))``
``array`` otherwise                    ``Sequence(item space)``; a tuple
``string``                             ``Text``: printable ASCII, ``maxLength`` or 256
                                       (actions) / 2**20 (observations) characters
``object`` with properties (a Struct)  ``Dict`` of its fields
anything else (unions, free dicts…)    the fallback: ``Text`` holding the value as JSON
=====================================  ===================================================

Observations leave out ``reward`` and ``done`` (``step`` returns them) and ``metadata``; the
typed observation is always in ``info["observation"]``. Actions leave out ``metadata`` and any
optional field whose type falls back (it keeps its default); a required one that falls back
takes JSON text, which a random ``action_space.sample()`` rarely is.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
from gymnasium import spaces

__all__ = ["SpaceMap", "action_map", "observation_map"]

CHARSET = string.printable
ACTION_TEXT = 256
OBSERVATION_TEXT = 2**20
_INT64 = np.iinfo(np.int64)
_OBSERVATION_SKIPS = {"reward", "done", "metadata"}
_ACTION_SKIPS = {"metadata"}


@dataclass(frozen=True)
class SpaceMap:
    """A space, and how values cross between it and our messages' builtin form.

    Attributes:
        space: the Gymnasium space.
        to_gym: a message value (builtin form: dicts, lists, str, numbers) -> a space element.
        from_gym: a space element -> the message value.
        fallback: the schema did not map; the value travels as JSON text.
    """

    space: spaces.Space[Any]
    to_gym: Callable[[Any], Any]
    from_gym: Callable[[Any], Any]
    fallback: bool = False


def observation_map(schema: dict[str, Any]) -> SpaceMap:
    """The observation space of an observation type's JSON Schema."""
    return _struct(schema, _Context(schema.get("$defs", {}), OBSERVATION_TEXT), _OBSERVATION_SKIPS)


def action_map(schema: dict[str, Any], action_type: type[msgspec.Struct]) -> SpaceMap:
    """The action space of an action type's JSON Schema; ``from_gym`` returns an
    ``action_type`` instance (and passes instances through as they are)."""
    inner = _struct(schema, _Context(schema.get("$defs", {}), ACTION_TEXT), _ACTION_SKIPS, True)

    def from_gym(value: Any) -> Any:
        if isinstance(value, action_type):
            return value
        return msgspec.convert(inner.from_gym(value), action_type)

    return SpaceMap(inner.space, inner.to_gym, from_gym)


@dataclass(frozen=True)
class _Context:
    defs: dict[str, Any]
    text_length: int

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = self.defs[node["$ref"].rsplit("/", 1)[-1]]
        return node


def _struct(
    schema: dict[str, Any], context: _Context, skips: set[str], is_action: bool = False
) -> SpaceMap:
    node = context.resolve(schema)
    required = set(node.get("required", ()))
    fields: dict[str, tuple[SpaceMap, Any]] = {}
    for name, sub in node.get("properties", {}).items():
        if name in skips:
            continue
        mapped = _node(sub, context)
        if mapped.fallback and is_action and name not in required:
            continue  # an optional action field gym cannot express keeps its default
        fields[name] = (mapped, context.resolve(sub).get("default"))
    space = spaces.Dict({name: mapped.space for name, (mapped, _) in fields.items()})

    def to_gym(value: Any) -> dict[str, Any]:
        # Builtin forms omit fields equal to their defaults: the schema's default fills in.
        return {name: m.to_gym(value.get(name, d)) for name, (m, d) in fields.items()}

    def from_gym(value: Any) -> dict[str, Any]:
        return {name: m.from_gym(value[name]) for name, (m, _) in fields.items()}

    return SpaceMap(space, to_gym, from_gym)


def _node(schema: dict[str, Any], context: _Context) -> SpaceMap:
    node = context.resolve(schema)
    kind = node.get("type")
    if "enum" in node:
        values = list(node["enum"])
        return SpaceMap(
            spaces.Discrete(len(values)),
            lambda v: np.int64(values.index(v)),
            lambda a: values[int(a)],
        )
    if kind == "boolean":
        return SpaceMap(spaces.Discrete(2), lambda v: np.int64(bool(v)), lambda a: bool(a))
    if kind == "integer":
        return _integer(node)
    if kind == "number":
        low, high = _bounds(node, -np.inf, np.inf)
        box = spaces.Box(low=low, high=high, shape=(), dtype=np.float64)
        return SpaceMap(box, lambda v: np.asarray(v, dtype=np.float64), float)
    if kind == "string":
        text = spaces.Text(
            max_length=node.get("maxLength", context.text_length),
            min_length=node.get("minLength", 0),
            charset=CHARSET,
        )
        return SpaceMap(text, str, str)
    if kind == "array" and "items" in node:
        return _array(node, context)
    if kind == "object" and "properties" in node:
        return _struct(node, context, set())
    return _json_text(context)


def _integer(node: dict[str, Any]) -> SpaceMap:
    low, high = _bounds(node, _INT64.min, _INT64.max)
    if low > _INT64.min and high < _INT64.max:
        discrete = spaces.Discrete(int(high - low + 1), start=int(low))
        return SpaceMap(discrete, np.int64, int)
    box = spaces.Box(low=low, high=high, shape=(), dtype=np.int64)
    return SpaceMap(box, lambda v: np.asarray(v, dtype=np.int64), int)


def _bounds(node: dict[str, Any], low: Any, high: Any) -> tuple[Any, Any]:
    step = 1 if node.get("type") == "integer" else 0
    if "minimum" in node:
        low = node["minimum"]
    elif "exclusiveMinimum" in node:
        low = node["exclusiveMinimum"] + step
    if "maximum" in node:
        high = node["maximum"]
    elif "exclusiveMaximum" in node:
        high = node["exclusiveMaximum"] - step
    return low, high


def _array(node: dict[str, Any], context: _Context) -> SpaceMap:
    item = _node(node["items"], context)
    length = node.get("minItems")
    if length is not None and length == node.get("maxItems") and isinstance(item.space, spaces.Box):
        low, high = item.space.low.item(), item.space.high.item()  # the item's 0-d bounds
        box = spaces.Box(low=low, high=high, shape=(length,), dtype=item.space.dtype)
        return SpaceMap(
            box, lambda v: np.asarray(v, dtype=box.dtype), lambda a: [x.item() for x in a]
        )
    return SpaceMap(
        spaces.Sequence(item.space),
        lambda v: tuple(item.to_gym(x) for x in v),
        lambda a: [item.from_gym(x) for x in a],
    )


def _json_text(context: _Context) -> SpaceMap:
    text = spaces.Text(max_length=max(context.text_length, ACTION_TEXT), charset=CHARSET)
    return SpaceMap(text, lambda v: json.dumps(v), json.loads, fallback=True)
