"""The action the bench steps an env with, about ``size`` bytes large: the env package's
``sample_action(size)`` when it defines one, else an action whose required fields are filled
by type (strings ``size`` long). Envs themselves are found by :mod:`openenv.registry`.
"""

from __future__ import annotations

import typing
from typing import Any

import msgspec

from openenv.registry import EnvSpec
from openenv.types import Action

__all__ = ["default_action", "sample_action"]


def sample_action(spec: EnvSpec, size: int) -> Action:
    """A sample action of the env ``spec``, about ``size`` bytes large."""
    sample = getattr(spec.import_module(), "sample_action", None)
    if sample is not None:
        action: Action = sample(size)
        return action
    return default_action(spec.action_type, size)


def default_action(action_type: type[Action], size: int) -> Action:
    """An ``action_type`` whose required fields hold plain values of their declared types."""
    values: dict[str, Any] = {}
    hints = typing.get_type_hints(action_type)
    for field in msgspec.structs.fields(action_type):
        if field.required:
            values[field.name] = _placeholder(hints[field.name], size)
    return msgspec.convert(values, action_type)


def _placeholder(annotation: Any, size: int) -> Any:
    origin = typing.get_origin(annotation) or annotation
    if origin is str:
        return "x" * size
    if origin is bool:
        return False
    if origin in (int, float):
        return 0
    if origin in (list, tuple, set, frozenset):
        return []
    if origin is dict:
        return {}
    for option in typing.get_args(annotation):  # unions: the first member we can fill
        if option is not type(None):
            return _placeholder(option, size)
    raise ValueError(f"cannot make a sample value of {annotation!r}; define sample_action(size)")
