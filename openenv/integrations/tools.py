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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from openenv.exceptions import OpenEnvError
from openenv.tools import Tool, ToolResult
from openenv.types import Action, Observation

__all__ = [
    "ToolCallError",
    "ToolSpec",
    "declared_tools",
    "observation_text",
    "parse_tool_calls",
    "tools_of",
]

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
        build: makes the action from the call's keyword arguments; None for a tool the env
            declares (``@tool``), which is called by name (``call_tool``) and checks its own
            arguments.
    """

    name: str
    description: str
    parameters: tuple[tuple[str, Any, Any, str], ...]
    build: Callable[[Mapping[str, Any]], Action] | None = None

    def action(self, arguments: Mapping[str, Any]) -> Action:
        """The action for one call, or :class:`ToolCallError` saying what is wrong with it."""
        unknown = sorted(set(arguments) - {p[0] for p in self.parameters})
        if unknown:
            raise ToolCallError(f"{self.name}() got unexpected arguments {unknown}")
        if self.build is None:
            raise TypeError(f"{self.name} is a declared tool: call it by name, not as an action")
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


_JSON_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list,
    "object": dict,
}


def declared_tools(tools: Sequence[Tool]) -> list[ToolSpec]:
    """The tools an env declares (``@tool``, listed by ``list_tools``) as tool specs: typed
    from each tool's JSON Schema (a type it does not name, or a union, is ``dict``)."""
    specs = []
    for tool in tools:
        schema = tool.input_schema
        required = set(schema.get("required", ()))
        parameters = []
        for name, prop in schema.get("properties", {}).items():
            kind = prop.get("type") if isinstance(prop, dict) else None
            annotation = _JSON_TYPES.get(kind, dict) if isinstance(kind, str) else dict
            default = inspect.Parameter.empty if name in required else prop.get("default")
            if name not in required and default is None:
                annotation = annotation | None
            text = prop.get("description") or f"the {name} argument of {tool.name}"
            parameters.append((name, annotation, default, str(text)))
        specs.append(
            ToolSpec(
                name=tool.name,
                description=tool.description or f"The env's {tool.name} tool.",
                parameters=tuple(parameters),
            )
        )
    return specs


def tools_of(action_type: type[Action], name: str | None = None) -> list[ToolSpec]:
    """The tools of an env whose actions are ``action_type``: one per action kind.

    An action type is one kind (``EchoAction`` -> a tool ``echo(message: str)``). An action
    whose one field holds a union of tagged structs (the terminal env's ``TerminalAction(op=
    Exec | WriteFile | ...)``) is one kind per member, named by its tag (``exec``,
    ``write_file``, ...); so is a union of action structs. ``name`` overrides the tool's name
    for a single kind. Field types the tool-schema readers do not know are given as what a
    model can write: nested structs as ``dict``, ``bytes`` as ``str`` (encoded as UTF-8).
    """
    kinds = _kinds(action_type)
    if name is not None and len(kinds) != 1:
        raise ValueError("name= names the tool of an env with one action kind")
    return [_spec(kind, wrap, name) for kind, wrap in kinds]


def _kinds(action_type: type[Any]) -> list[tuple[type[Any], Callable[[Any], Action]]]:
    """(kind, wrap) per action kind: ``wrap`` turns a value of the kind into the action."""
    members = [a for a in typing.get_args(action_type) if isinstance(a, type)]
    if members:
        return [(member, _same) for member in members]
    if not (isinstance(action_type, type) and issubclass(action_type, msgspec.Struct)):
        raise TypeError(f"an action type must be a msgspec Struct, not {action_type!r}")
    own = [f for f in _fields(action_type) if not _bookkeeping(action_type, f.name)]
    if len(own) == 1:
        options = typing.get_args(typing.get_type_hints(action_type)[own[0].name])
        if options and all(_tagged(option) for option in options):
            wrap = functools.partial(_wrap, action_type, own[0].name)
            return [(option, wrap) for option in options]
    return [(action_type, _same)]


def _fields(kind: type[Any]) -> tuple[msgspec.inspect.Field, ...]:
    info = msgspec.inspect.type_info(kind)
    assert isinstance(info, msgspec.inspect.StructType)
    return info.fields


def _tagged(option: Any) -> bool:
    if not (isinstance(option, type) and issubclass(option, msgspec.Struct)):
        return False
    info = msgspec.inspect.type_info(option)
    return isinstance(info, msgspec.inspect.StructType) and info.tag is not None


def _bookkeeping(kind: type[Any], field: str) -> bool:
    """The base Action's ``metadata``: not the model's to fill."""
    return field == "metadata" and issubclass(kind, Action)


def _same(action: Any) -> Action:
    return action  # type: ignore[no-any-return]


def _wrap(action_type: type[Any], field: str, value: Any) -> Action:
    return action_type(**{field: value})  # type: ignore[no-any-return]


def _spec(kind: type[Any], wrap: Callable[[Any], Action], name: str | None) -> ToolSpec:
    hints = typing.get_type_hints(kind)
    _, definitions = msgspec.json.schema_components([kind])
    properties = definitions.get(kind.__name__, {}).get("properties", {})
    parameters = []
    encoded = []
    for field in _fields(kind):
        if _bookkeeping(kind, field.name):
            continue
        default = inspect.Parameter.empty if field.required else _default(field)
        description = _describe(field, properties, kind)
        parameters.append((field.name, _annotation(hints[field.name]), default, description))
        if hints[field.name] is bytes:
            encoded.append(field.name)
    info = msgspec.inspect.type_info(kind)
    tag = info.tag if isinstance(info, msgspec.inspect.StructType) else None
    return ToolSpec(
        name=name or (tag if isinstance(tag, str) else _tool_name(kind.__name__)),
        description=_summary(kind),
        parameters=tuple(parameters),
        build=functools.partial(_build, kind, wrap, tuple(encoded)),
    )


def _summary(kind: type[Any]) -> str:
    """The first paragraph of the kind's docstring, on one line."""
    paragraph = inspect.cleandoc(kind.__doc__ or "").split("\n\n")[0]
    return " ".join(paragraph.split()) or f"Take a {kind.__name__} action."


def _build(
    kind: type[Any],
    wrap: Callable[[Any], Action],
    encoded: tuple[str, ...],
    arguments: Mapping[str, Any],
) -> Action:
    values = dict(arguments)
    for field in encoded:  # a model writes text; the kind wants bytes
        if isinstance(values.get(field), str):
            values[field] = values[field].encode()
    return wrap(msgspec.convert(values, kind))


def _default(field: msgspec.inspect.Field) -> Any:
    if field.default is not msgspec.NODEFAULT:
        return field.default
    return field.default_factory()


def _annotation(hint: Any) -> Any:
    """``hint`` if a JSON-schema reader knows it; structs (and containers of them) -> dict."""
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and issubclass(hint, msgspec.Struct):
        return dict
    if hint is bytes:
        return str
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
    its value alone. A declared tool's result is its ``result`` (or ``error: ...``)."""
    if isinstance(observation, ToolResult):
        if observation.error is not None:
            return f"error: {observation.error.type}: {observation.error.message}"
        result = observation.result
        if isinstance(result, dict):  # an observation's fields: those that say something
            said = [(k, v) for k, v in result.items() if v not in (None, "", [], {}, False)]
            return "\n".join(f"{name}: {value}" for name, value in said)
        return str(result)
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


_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)


def parse_tool_calls(text: str) -> list[tuple[str, dict[str, Any]] | ToolCallError]:
    """The tool calls in a model's text, in the Hermes / Qwen form TRL and most chat templates
    use: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, any number of them. A
    call that does not parse is a :class:`ToolCallError` in its place (to report to the model),
    not an exception."""
    calls: list[tuple[str, dict[str, Any]] | ToolCallError] = []
    for body in _TOOL_CALL.findall(text):
        try:
            call = msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            calls.append(ToolCallError(f"the tool call is not valid JSON ({exc}): {body[:200]}"))
            continue
        name = call.get("name") if isinstance(call, dict) else None
        arguments = call.get("arguments", {}) if isinstance(call, dict) else None
        if isinstance(arguments, str):  # some templates write the arguments as a JSON string
            try:
                arguments = msgspec.json.decode(arguments)
            except msgspec.DecodeError:
                arguments = None
        if not isinstance(name, str) or not isinstance(arguments, dict):
            calls.append(
                ToolCallError(f'a tool call is {{"name": str, "arguments": object}}: {body[:200]}')
            )
            continue
        calls.append((name, arguments))
    return calls
