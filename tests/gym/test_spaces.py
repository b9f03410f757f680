"""Spaces from JSON Schemas: each mapping of the table in ``openenv.gym.spaces``, and values
that cross both ways and stay inside their spaces."""

from __future__ import annotations

import enum
from typing import Annotated, Literal

import msgspec
import numpy as np
from gymnasium import spaces

from openenv.gym.spaces import ACTION_TEXT, OBSERVATION_TEXT, action_map, observation_map
from openenv.types import Action, Observation


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Inner(msgspec.Struct):
    x: float = 0.0


class Everything(Action, kw_only=True):
    mode: Literal["a", "b", "c"]
    color: Color
    flag: bool
    die: Annotated[int, msgspec.Meta(ge=1, le=6)]
    count: int
    level: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
    vector: Annotated[list[float], msgspec.Meta(min_length=3, max_length=3)]
    words: list[str]
    name: Annotated[str, msgspec.Meta(max_length=8)]
    inner: Inner
    table: dict[str, int]  # no space fits: JSON text
    maybe: int | None = None  # optional, no space fits: left out of actions


def schema(kind: type) -> dict:  # type: ignore[type-arg]
    return msgspec.json.schema(kind)


def test_each_kind_of_field_maps() -> None:
    space = action_map(schema(Everything), Everything).space
    assert isinstance(space, spaces.Dict)
    s = space.spaces
    assert set(s) == {
        "mode", "color", "flag", "die", "count", "level", "vector", "words", "name", "inner",
        "table",
    }  # fmt: skip
    assert s["mode"] == spaces.Discrete(3) and s["color"] == spaces.Discrete(2)
    assert s["flag"] == spaces.Discrete(2)
    assert s["die"] == spaces.Discrete(6, start=1)
    assert isinstance(s["count"], spaces.Box) and s["count"].dtype == np.int64
    assert isinstance(s["level"], spaces.Box) and (s["level"].low, s["level"].high) == (0, 1)
    assert isinstance(s["vector"], spaces.Box) and s["vector"].shape == (3,)
    assert isinstance(s["words"], spaces.Sequence) and isinstance(
        s["words"].feature_space, spaces.Text
    )
    assert isinstance(s["name"], spaces.Text) and s["name"].max_length == 8
    assert isinstance(s["inner"], spaces.Dict) and isinstance(s["inner"]["x"], spaces.Box)
    assert isinstance(s["table"], spaces.Text)  # the fallback
    assert s["table"].max_length == ACTION_TEXT


def test_sampled_actions_become_typed_actions() -> None:
    mapped = action_map(schema(Everything), Everything)
    mapped.space.seed(0)
    for _ in range(20):
        sample = mapped.space.sample()
        sample["table"] = '{"k": 1}'  # random text is rarely JSON: the fallback's price
        action = mapped.from_gym(sample)
        assert isinstance(action, Everything)
        assert action.mode in ("a", "b", "c") and 1 <= action.die <= 6 and len(action.vector) == 3
        assert action.table == {"k": 1} and action.maybe is None
    same = Everything(
        mode="a", color=Color.RED, flag=True, die=1, count=0, level=0.0, vector=[0.0] * 3,
        words=[], name="", inner=Inner(), table={},
    )  # fmt: skip
    assert mapped.from_gym(same) is same  # typed actions pass through


class Seen(Observation):
    label: str = ""
    steps: Annotated[int, msgspec.Meta(ge=0, le=9)] = 0
    scores: list[float] = []
    extra: dict[str, int] = {}


def test_observations_land_in_their_space() -> None:
    mapped = observation_map(schema(Seen))
    s = mapped.space
    assert set(s.spaces) == {"label", "steps", "scores", "extra"}  # no reward, done, metadata
    assert s["label"].max_length == OBSERVATION_TEXT
    for value in (Seen(), Seen(label="hi!", steps=9, scores=[0.5, 1.5], extra={"a": 1})):
        element = mapped.to_gym(msgspec.to_builtins(value))  # defaults omitted: schema fills
        assert element in s
        assert element["extra"] == ('{"a": 1}' if value.extra else "{}")
