"""Gymnasium envs on the wire: the messages of a served Gymnasium env, and its spaces described
exactly (for the greeting and ``/schema``) and rebuilt on the other side.

Shared by the server side (``openenv.server.gym_env``) and the client side (``openenv.gym``);
it needs ``gymnasium`` and ``numpy`` (``pip install 'openenv-rl[gym]'``), nothing of ours above
the protocol.

A space's description is plain JSON. ``Box``, ``Discrete``, ``MultiDiscrete``,
``MultiBinary``, ``Text``, ``Dict``, ``Tuple`` and ``Sequence`` round-trip exactly (the rebuilt
space equals the original: dtypes, shapes, bounds, charsets); bounds that are all one value
travel as that value, infinities as the strings ``"inf"`` and ``"-inf"``. Any other space
(e.g. MiniGrid's ``MissionSpace``, whose value set is a Python function) becomes
:class:`Opaque`: its values pass through unchecked.

Values cross as the protocol sends them: numpy arrays and scalars keep their dtype and shape
(binary frames), tuples arrive as lists and are made tuples again by :func:`restore`.
"""

from __future__ import annotations

from typing import Annotated, Any, cast

import msgspec
import numpy as np
from gymnasium import spaces

from openenv.types import Action, Observation, State

__all__ = [
    "SPACE_KEY",
    "GymAction",
    "GymObservation",
    "GymState",
    "Opaque",
    "describe",
    "rebuild",
    "restore",
    "spaces_of_schemas",
    "typed_for",
]

#: The JSON Schema keyword under which a served env's schemas carry its spaces.
SPACE_KEY = "x-gymnasium-space"


class GymAction(Action):
    """One action of a Gymnasium env's action space."""

    action: Any


class GymObservation(Observation):
    """What Gymnasium's ``reset`` and ``step`` return; ``done`` is ``terminated or truncated``
    and ``reward`` is None after a reset."""

    observation: Any = None
    terminated: bool = False
    truncated: bool = False
    info: dict[str, Any] = {}


class GymState(State):
    """The episode's bookkeeping, and which Gymnasium id is served."""

    env_id: str = ""


def typed_for(
    action_space: spaces.Space[Any], observation_space: spaces.Space[Any]
) -> tuple[type[GymAction], type[GymObservation]]:
    """Subclasses of :class:`GymAction` and :class:`GymObservation` (same names, same wire
    form) whose JSON Schemas describe these spaces under :data:`SPACE_KEY`."""

    def field(space: spaces.Space[Any]) -> Any:
        return Annotated[Any, msgspec.Meta(extra_json_schema={SPACE_KEY: describe(space)})]

    action = msgspec.defstruct(
        "GymAction", [("action", field(action_space))], bases=(GymAction,), module=__name__
    )
    observation = msgspec.defstruct(
        "GymObservation",
        [("observation", field(observation_space), None)],
        bases=(GymObservation,),
        module=__name__,
    )
    return cast(type[GymAction], action), cast(type[GymObservation], observation)


def spaces_of_schemas(
    action_schema: dict[str, Any], observation_schema: dict[str, Any]
) -> tuple[spaces.Space[Any], spaces.Space[Any]]:
    """The (action, observation) spaces a served env's JSON Schemas carry.

    Raises:
        ValueError: the schemas describe no Gymnasium spaces (the server serves another env).
    """
    return (
        rebuild(_field_space(action_schema, "GymAction", "action")),
        rebuild(_field_space(observation_schema, "GymObservation", "observation")),
    )


def _field_space(schema: dict[str, Any], name: str, field: str) -> dict[str, Any]:
    # msgspec's form refers to $defs; upstream's /schema has the definition at the root.
    root = schema.get("$defs", {}).get(name, schema)
    try:
        description: dict[str, Any] = root["properties"][field][SPACE_KEY]
    except (KeyError, TypeError):
        raise ValueError(f"the schema of {name} carries no Gymnasium space") from None
    return description


# Describing a space.


def describe(space: spaces.Space[Any]) -> dict[str, Any]:
    """A JSON description of ``space`` that :func:`rebuild` turns into an equal space."""
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "dtype": space.dtype.str,
            "shape": list(space.shape),
            "low": _bound(space.low),
            "high": _bound(space.high),
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {
            "type": "MultiDiscrete",
            "dtype": space.dtype.str,
            "nvec": space.nvec.tolist(),
            "start": space.start.tolist(),
        }
    if isinstance(space, spaces.MultiBinary):
        n = space.n
        return {"type": "MultiBinary", "n": n if isinstance(n, int) else [int(d) for d in n]}
    if isinstance(space, spaces.Text):
        return {
            "type": "Text",
            "min_length": space.min_length,
            "max_length": space.max_length,
            "charset": "".join(sorted(space.character_set)),
        }
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {str(k): describe(s) for k, s in space.spaces.items()}}
    if isinstance(space, spaces.Tuple):
        return {"type": "Tuple", "spaces": [describe(s) for s in space.spaces]}
    if isinstance(space, spaces.Sequence):
        return {"type": "Sequence", "space": describe(space.feature_space), "stack": space.stack}
    kind = type(space)
    return {"type": "Opaque", "class": f"{kind.__module__}.{kind.__qualname__}"}


def _bound(values: np.ndarray[Any, Any]) -> Any:
    flat = values.ravel()
    if flat.size and (flat == flat[0]).all():
        return _number(flat[0])
    return [_number(v) for v in flat]


def _number(value: Any) -> Any:
    number = value.item()
    if isinstance(number, float) and not np.isfinite(number):
        return str(number)  # "inf", "-inf", "nan": JSON has no such numbers
    return number


def rebuild(description: dict[str, Any]) -> spaces.Space[Any]:
    """The space :func:`describe` described.

    Raises:
        ValueError: the description is malformed.
    """
    try:
        return _rebuild(description)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a Gymnasium space description: {exc!r}") from None


def _rebuild(d: dict[str, Any]) -> spaces.Space[Any]:
    kind = d["type"]
    if kind == "Box":
        dtype, shape = np.dtype(d["dtype"]), tuple(d["shape"])
        low, high = _array(d["low"], dtype, shape), _array(d["high"], dtype, shape)
        return spaces.Box(low=low, high=high, shape=shape, dtype=dtype)
    if kind == "Discrete":
        return spaces.Discrete(d["n"], start=d["start"])
    if kind == "MultiDiscrete":
        dtype = np.dtype(d["dtype"])
        return spaces.MultiDiscrete(
            np.array(d["nvec"], dtype=dtype), dtype=dtype, start=np.array(d["start"], dtype=dtype)
        )
    if kind == "MultiBinary":
        return spaces.MultiBinary(d["n"])
    if kind == "Text":
        return spaces.Text(d["max_length"], min_length=d["min_length"], charset=d["charset"])
    if kind == "Dict":
        return spaces.Dict({k: _rebuild(s) for k, s in d["spaces"].items()})
    if kind == "Tuple":
        return spaces.Tuple([_rebuild(s) for s in d["spaces"]])
    if kind == "Sequence":
        return spaces.Sequence(_rebuild(d["space"]), stack=d["stack"])
    if kind == "Opaque":
        return Opaque(d["class"])
    raise ValueError(f"unknown space type {kind!r}")


def _array(bound: Any, dtype: np.dtype[Any], shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    if not isinstance(bound, list):
        return np.full(shape, float(bound) if isinstance(bound, str) else bound, dtype=dtype)
    values = [float(v) if isinstance(v, str) else v for v in bound]
    return np.array(values, dtype=dtype).reshape(shape)


class Opaque(spaces.Space[Any]):
    """A space of a type that does not cross the wire exactly (its value set is code, not
    data): it holds any value, and cannot be sampled.

    Attributes:
        kind: the original space's class, ``module.QualName``.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def contains(self, x: Any) -> bool:
        return True

    def sample(self, mask: Any = None, probability: Any = None) -> Any:
        raise NotImplementedError(f"cannot sample {self}: its values are defined server-side")

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"Opaque({self.kind})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.kind == self.kind

    def __hash__(self) -> int:
        return hash(self.kind)


# Values.


def restore(space: spaces.Space[Any], value: Any) -> Any:
    """``value`` as it arrived (arrays, or lists from a JSON frame; tuples as lists) made the
    kind of value ``space`` holds: arrays of its dtype, tuples, dicts of such values."""
    if isinstance(space, spaces.Box | spaces.MultiDiscrete | spaces.MultiBinary):
        if isinstance(value, np.ndarray):
            return value
        return np.asarray(value, dtype=space.dtype)
    if isinstance(space, spaces.Dict) and isinstance(value, dict):
        return {
            k: restore(space.spaces[k], v) if k in space.spaces else v for k, v in value.items()
        }
    if isinstance(space, spaces.Tuple) and isinstance(value, list | tuple):
        return tuple(restore(s, v) for s, v in zip(space.spaces, value, strict=False))
    if isinstance(space, spaces.Sequence) and not space.stack and isinstance(value, list | tuple):
        return tuple(restore(space.feature_space, v) for v in value)
    if isinstance(space, spaces.Sequence) and space.stack and not isinstance(value, np.ndarray):
        return np.asarray(value, dtype=space.feature_space.dtype)
    return value
