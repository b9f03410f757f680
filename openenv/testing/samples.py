"""Example actions made from an action type alone, for checking an env nobody gave actions for.

Each required field gets the simplest value its type and constraints allow (``"openenv"``, the
lowest allowed number, the first literal, an empty list…); fields with defaults keep them. The
result is validated by msgspec, so a value that slipped through is caught here, not in the env.
"""

from __future__ import annotations

from typing import Any

import msgspec
import msgspec.inspect as mi

__all__ = ["SampleError", "example_action"]

_TEXT = "openenv"


class SampleError(Exception):
    """No example value could be made for a field; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def example_action(action_type: type[msgspec.Struct]) -> msgspec.Struct:
    """The simplest valid instance of ``action_type``.

    Raises:
        SampleError: a required field's type or constraints admit no value made here.
    """
    info = mi.type_info(action_type)
    assert isinstance(info, mi.StructType)
    values = {}
    for field in info.fields:
        if field.required:
            try:
                values[field.encode_name] = _value(field.type)
            except SampleError as exc:
                raise SampleError(field.name, str(exc)) from None
    try:
        return msgspec.convert(values, action_type)
    except msgspec.ValidationError as exc:
        raise SampleError(_field_of(str(exc)), str(exc)) from None


def _value(kind: mi.Type) -> Any:
    if isinstance(kind, mi.Metadata):  # a description or title (a tool argument's, say)
        return _value(kind.type)
    if isinstance(kind, mi.StrType):
        if kind.pattern is not None:
            raise SampleError("", f"a str matching {kind.pattern!r}")
        low, high = kind.min_length or 0, kind.max_length
        text = _TEXT.ljust(low, "x")
        return text if high is None else text[:high]
    if isinstance(kind, mi.IntType | mi.FloatType):
        return _number(kind)
    if isinstance(kind, mi.BoolType):
        return False
    if isinstance(kind, mi.NoneType):
        return None
    if isinstance(kind, mi.LiteralType):
        return kind.values[0]
    if isinstance(kind, mi.EnumType):
        return next(iter(kind.cls)).value
    if isinstance(kind, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        return [_value(kind.item_type) for _ in range(kind.min_length or 0)]
    if isinstance(kind, mi.TupleType):
        return [_value(item) for item in kind.item_types]
    if isinstance(kind, mi.DictType):
        if kind.min_length:
            raise SampleError("", "a non-empty dict")
        return {}
    if isinstance(kind, mi.StructType):
        return msgspec.to_builtins(example_action(kind.cls))
    if isinstance(kind, mi.UnionType):
        for member in kind.types:
            try:
                return _value(member)
            except SampleError:
                continue
    if isinstance(kind, mi.AnyType):
        return None
    raise SampleError("", f"a value of {type(kind).__name__.removesuffix('Type')}")


def _number(kind: mi.IntType | mi.FloatType) -> int | float:
    if kind.ge is not None:
        value: float = kind.ge
    elif kind.gt is not None:
        value = kind.gt + 1
    elif kind.le is not None and kind.le < 0:
        value = kind.le
    elif kind.lt is not None and kind.lt <= 0:
        value = kind.lt - 1
    else:
        value = 0
    if kind.multiple_of and value % kind.multiple_of:
        value += kind.multiple_of - value % kind.multiple_of
    return int(value) if isinstance(kind, mi.IntType) else float(value)


def _field_of(detail: str) -> str:
    """``Expected int, got str - at `$.count``` -> ``count``."""
    _, _, path = detail.partition("`$.")
    return path.rstrip("`").split(".")[0].split("[")[0]
