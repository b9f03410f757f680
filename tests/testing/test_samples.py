"""Example actions from types alone: the simplest value each constraint admits."""

from __future__ import annotations

import enum
from typing import Annotated, Literal

import msgspec
import pytest

from openenv.testing.samples import SampleError, example_action
from openenv.types import Action


class Kind(enum.Enum):
    A = 1
    B = 2


class Point(msgspec.Struct):
    x: int
    y: int = 5


class Rich(Action, kw_only=True):
    text: str
    short: Annotated[str, msgspec.Meta(max_length=3)]
    long: Annotated[str, msgspec.Meta(min_length=10)]
    positive: Annotated[int, msgspec.Meta(gt=0)]
    at_least: Annotated[float, msgspec.Meta(ge=2.5)]
    negative: Annotated[int, msgspec.Meta(lt=-3)]
    even: Annotated[int, msgspec.Meta(ge=3, multiple_of=2)]
    flag: bool
    mode: Literal["x", "y"]
    kind: Kind
    items: Annotated[list[int], msgspec.Meta(min_length=2)]
    pair: tuple[int, str]
    point: Point
    maybe: int | None
    table: dict[str, int]
    kept: int = 7


def test_every_constraint_gets_its_simplest_value() -> None:
    action = example_action(Rich)
    assert isinstance(action, Rich)
    assert (action.text, action.short, action.long) == ("openenv", "ope", "openenvxxx")
    assert (action.positive, action.at_least, action.negative, action.even) == (1, 2.5, -4, 4)
    assert (action.flag, action.mode, action.kind) == (False, "x", Kind.A)
    assert (action.items, action.pair, action.point) == ([0, 0], (0, "openenv"), Point(x=0))
    assert (action.maybe, action.table, action.kept) == (0, {}, 7)


def test_what_cannot_be_made_names_the_field() -> None:
    class Patterned(Action):
        code: Annotated[str, msgspec.Meta(pattern="^[A-Z]{3}$")]

    with pytest.raises(SampleError, match="a str matching") as caught:
        example_action(Patterned)
    assert caught.value.field == "code"
