"""An env's tools as trainers see them: one typed, documented call per action kind.

Trainers (TRL, SkyRL, verl) let a model call *functions* with JSON arguments. An openenv env
takes *actions*: instances of its action type. :func:`tools_of` turns each action kind into a
:class:`ToolSpec` (a name, a description, typed parameters, and how to build the action from the
call's arguments); :func:`observation_text` turns what the env answers into the text the model
reads. The trainer adapters build their tool methods from these, so every trainer sees the same
tools for the same env.
"""

from __future__ import annotations

import functools
import inspect
import operator
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from openenv.exceptions import OpenEnvError
from openenv.types import Action, Observation

__all__ = ["ToolCallError", "ToolSpec", "observation_text", "tools_of"]

# Fields every observation carries; the model is not shown them (the reward is the trainer's).
_BOOKKEEPING = ("reward", "done", "metadata")
_POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD


class ToolCallError(OpenEnvError):
    """A tool call the env could not carry out: bad arguments, the env refused the action, the
    episode is over, or the session broke. Trainers report it to the model as the call's
    result (TRL counts it under ``tools/failure_frequency``); training goes on."""


@dataclass(frozen=True)
class ToolSpec:
    """One tool: a call named ``name`` with ``parameters`` that builds an action.

    Attributes:
        name: the function name the model calls, e.g. ``"echo"``.
        description: what the call does (the action type's docstring).
        parameters: (name, annotation, default, description) per argument; default is
            ``inspect.Parameter.empty`` for a required one.
        build: makes the action from the call's keyword arguments.
    """

    name: str
    description: str
    parameters: tuple[tuple[str, Any, Any, str], ...]
    build: Callable[[Mapping[str, Any]], Action]

    def action(self, arguments: Mapping[str, Any]) -> Action:
        """The action for one call, or :class:`ToolCallError` saying what is wrong with it."""
        unknown = sorted(set(arguments) - {p[0] for p in self.parameters})
        if unknown:
            raise ToolCallError(f"{self.name}() got unexpected arguments {unknown}")
        try:
            return self.build(arguments)
        except msgspec.ValidationError as exc:
            raise ToolCallError(f"{self.name}(): {exc}") from None

    def signature(self) -> inspect.Signature:
        """The call's signature, with ``self`` first (for a method)."""
        params = [inspect.Parameter("self", _POSITIONAL)]
        params += [
            inspect.Parameter(name, _POSITIONAL, default=default, annotation=annotation)
            for name, annotation, default, _ in self.parameters
        ]
        return inspect.Signature(params, return_annotation=str)

    def docstring(self) -> str:
        """Google style, with an ``Args:`` line per parameter: the form transformers reads a
        tool's JSON schema from (``transformers.utils.get_json_schema``)."""
        lines = [self.description, ""]
        if self.parameters:
            lines.append("Args:")
            lines += [f"    {name}: {text}" for name, _, _, text in self.parameters]
            lines.append("")
        lines += ["Returns:", "    What the environment observed after the action."]
        return "\n".join(lines)


def tools_of(action_type: type[Action], name: str | None = None) -> list[ToolSpec]:
    """The tools of an env whose actions are ``action_type``: one per action kind.

    An action type is one kind (``EchoAction`` -> a tool ``echo(message: str)``); a union of
    action structs is one kind per member. ``name`` overrides the tool's name for a single
    kind. Field types the tool-schema readers do not know (nested structs) are passed as
    ``dict`` and converted by msgspec when the action is built.
    """
    kinds = [a for a in typing.get_args(action_type) if isinstance(a, type)] or [action_type]
    if name is not None and len(kinds) != 1:
        raise ValueError("name= names the tool of an env with one action kind")
    return [_spec(kind, name) for kind in kinds]


def _spec(kind: type[Action], name: str | None) -> ToolSpec:
    if not (isinstance(kind, type) and issubclass(kind, msgspec.Struct)):
        raise TypeError(f"an action kind must be a msgspec Struct, not {kind!r}")
    info = msgspec.inspect.type_info(kind)
    assert isinstance(info, msgspec.inspect.StructType)
    hints = typing.get_type_hints(kind)
    _, definitions = msgspec.json.schema_components([kind])
    properties = definitions.get(kind.__name__, {}).get("properties", {})
    parameters = []
    for field in info.fields:
        if field.name == "metadata" and issubclass(kind, Action):
            continue  # the base Action's bookkeeping field, not the model's to fill
        default = inspect.Parameter.empty if field.required else _default(field)
        description = _describe(field, properties, kind)
        parameters.append((field.name, _annotation(hints[field.name]), default, description))
    description = inspect.cleandoc(kind.__doc__ or "") or f"Take a {kind.__name__} action."
    return ToolSpec(
        name=name or _tool_name(kind.__name__),
        description=description.splitlines()[0] if description else description,
        parameters=tuple(parameters),
        build=functools.partial(_build, kind),
    )


def _build(kind: type[Action], arguments: Mapping[str, Any]) -> Action:
    return msgspec.convert(dict(arguments), kind)


def _default(field: msgspec.inspect.Field) -> Any:
    if field.default is not msgspec.NODEFAULT:
        return field.default
    return field.default_factory()


def _annotation(hint: Any) -> Any:
    """``hint`` if a JSON-schema reader knows it; structs (and containers of them) -> dict."""
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and issubclass(hint, msgspec.Struct):
        return dict
    if origin in (list, tuple, set, frozenset):
        return list
    if origin is dict:
        return dict
    if origin in (typing.Union, types.UnionType):
        return functools.reduce(operator.or_, (_annotation(a) for a in typing.get_args(hint)))
    return hint


def _describe(field: msgspec.inspect.Field, schema: Mapping[str, Any], kind: type[Any]) -> str:
    """The field's ``Meta(description=...)``, else a plain phrase naming it."""
    text = schema.get(field.encode_name, {}).get("description")
    return text if isinstance(text, str) else f"the {field.name} of the {kind.__name__}"


def _tool_name(type_name: str) -> str:
    """``EchoAction`` -> ``echo``, ``RunPythonCode`` -> ``run_python_code``."""
    stem = type_name.removesuffix("Action") or type_name
    return re.sub(r"(?<!^)(?=[A-Z])", "_", stem).lower()


def observation_text(observation: Observation) -> str:
    """What the model reads of an observation: its own fields (not reward, done or metadata)
    that differ from their defaults, one ``name: value`` line each; a lone field is given as
    its value alone."""
    info = msgspec.inspect.type_info(type(observation))
    shown = []
    if isinstance(info, msgspec.inspect.StructType):
        for field in info.fields:
            if field.name in _BOOKKEEPING:
                continue
            value = getattr(observation, field.name)
            if not field.required and value == _default(field):
                continue
            shown.append((field.name, value))
    if len(shown) == 1:
        return str(shown[0][1])
    return "\n".join(f"{name}: {value}" for name, value in shown)
