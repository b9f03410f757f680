"""Tools: an env's typed methods, declared once with :func:`tool`, offered beside its ``step``.

::

    class EchoEnvironment(Environment[EchoAction, EchoObservation, State]):
        @tool
        def echo_message(self, message: str) -> str:
            \"\"\"Echo a message back.

            Args:
                message: the text to echo.
            \"\"\"
            return message

The tool's name is the method's; its description is the docstring's summary; its arguments'
JSON Schema comes from the type hints (msgspec builds it, and validates calls against it before
the method runs), each argument described by its ``Args:`` entry; the return annotation gives
the result's schema. A tool may be ``async def``; a blocking env's sync tools run on its thread,
as its ``step`` does.

A call is a step of the episode. It returns a :class:`~openenv.tools.ToolResult`: the return
value as ``result``; or, when the method raised, ``error`` (the session goes on, and the agent
reads the error). Reward and done come from the env: a tool returning an ``Observation`` sets
them (its other fields become ``result``), one returning a ``ToolResult`` sets everything.

A :class:`Toolbox` holds one env class's tools; every way of serving the env (our dialect,
upstream's, MCP) calls tools through it.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import msgspec

from openenv.tools import RESERVED_TOOL_NAMES, Tool, ToolError, ToolResult, inline_schema
from openenv.types import Observation
from openenv.upstream import RESERVED_OBSERVATION_FIELDS, public_fields, validation_errors

__all__ = ["ToolCallError", "Toolbox", "tool"]

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__openenv_tool__"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class _Options:
    name: str | None
    description: str | None


@typing.overload
def tool(function: F, /) -> F: ...


@typing.overload
def tool(*, name: str | None = None, description: str | None = None) -> Callable[[F], F]: ...


def tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
) -> Any:
    """Offer an ``Environment`` method as a tool: ``@tool`` or ``@tool(name=..., description=...)``.

    Args:
        name: the tool's name (default: the method's).
        description: what it does (default: the docstring's summary).
    """

    def mark(method: F) -> F:
        setattr(method, _MARK, _Options(name, description))
        return method

    return mark if function is None else mark(function)


class ToolCallError(Exception):
    """A call names no tool of the env, or its arguments do not fit the tool's schema (the
    message names the tool and the argument); answered ``invalid_action`` before the tool runs.

    Attributes:
        errors: pydantic-style entries (``{"type", "loc", "msg"}``), ``loc`` naming the argument.
    """

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class _Entry:
    """One tool: its method, its arguments Struct and its description."""

    __slots__ = ("arguments", "is_async", "method", "name", "spec")

    def __init__(self, env_cls: type[Any], attribute: str, method: Any, options: _Options) -> None:
        self.name = options.name or attribute
        self.method = attribute
        if not _NAME.fullmatch(self.name) or self.name in RESERVED_TOOL_NAMES:
            raise TypeError(
                f"{env_cls.__name__}.{attribute}: {self.name!r} cannot name a tool (reserved: "
                f"{', '.join(sorted(RESERVED_TOOL_NAMES))}; letters, digits, _ . - only)"
            )
        self.is_async = inspect.iscoroutinefunction(method)
        summary, described = _parse_docstring(inspect.getdoc(method) or "")
        try:
            hints = typing.get_type_hints(method, include_extras=True)
        except Exception as exc:
            raise TypeError(
                f"{env_cls.__name__}.{attribute}: cannot resolve the tool's type hints: {exc}"
            ) from exc
        fields: list[tuple[Any, ...]] = []
        for parameter in list(inspect.signature(method).parameters.values())[1:]:  # not self
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise TypeError(
                    f"{env_cls.__name__}.{attribute}: a tool takes named arguments only, "
                    f"not *{parameter.name}"
                )
            annotation = hints.get(parameter.name, Any)
            if parameter.name in described:
                meta = msgspec.Meta(description=described[parameter.name])
                annotation = Annotated[annotation, meta]
            if parameter.default is parameter.empty:
                fields.append((parameter.name, annotation))
            else:
                fields.append((parameter.name, annotation, parameter.default))
        self.arguments: type[msgspec.Struct] = msgspec.defstruct(
            self.name, fields, kw_only=True, forbid_unknown_fields=True
        )
        try:
            input_schema = inline_schema(msgspec.json.schema(self.arguments))
            returns = hints.get("return", Any)
            output_schema = None
            if returns not in (Any, None, type(None)):
                output_schema = inline_schema(msgspec.json.schema(returns))
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{env_cls.__name__}.{attribute}: a tool's arguments and result must be types "
                f"msgspec can describe: {exc}"
            ) from exc
        input_schema.pop("title", None)
        self.spec = Tool(
            name=self.name,
            description=options.description or summary,
            input_schema=input_schema,
            output_schema=output_schema,
        )

    def keywords(self, arguments: Any) -> dict[str, Any]:
        """The validated keyword arguments for the method."""
        if arguments.__class__ is not dict and not isinstance(arguments, dict):
            raise ToolCallError(
                f"tool {self.name!r}: arguments must be an object, not {type(arguments).__name__}",
                [{"type": "dict_type", "loc": ["arguments"], "msg": "Expected `object`"}],
            )
        try:
            validated = msgspec.convert(arguments, self.arguments)
        except msgspec.ValidationError as exc:
            errors = validation_errors(exc, ("arguments",))
            where = ".".join(str(part) for part in errors[0]["loc"][1:])
            named = f"argument {where!r}" if where else "arguments"
            message = f"tool {self.name!r}, {named}: {errors[0]['msg']}"
            raise ToolCallError(message, errors) from None
        return msgspec.structs.asdict(validated)


class Toolbox:
    """The tools of one env class (possibly none), read from its ``@tool`` methods once.

    Raises:
        TypeError: a tool is declared wrongly (a reserved or duplicate name, ``*args``, a type
            msgspec cannot describe); raised when the env class is defined.
    """

    def __init__(self, env_cls: type[Any]) -> None:
        self.env_name = getattr(env_cls, "__name__", "env")
        self._entries: dict[str, _Entry] = {}
        for attribute, method in _marked(env_cls):
            entry = _Entry(env_cls, attribute, method, getattr(method, _MARK))
            if entry.name in self._entries:
                raise TypeError(f"{env_cls.__name__}: two tools are named {entry.name!r}")
            self._entries[entry.name] = entry
        #: What ``list_tools`` answers.
        self.specs: list[Tool] = [entry.spec for entry in self._entries.values()]

    def __bool__(self) -> bool:
        return bool(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def is_async(self, name: str) -> bool:
        """Whether tool ``name`` is ``async def`` (its prepared call is a coroutine function)."""
        return self._entries[name].is_async

    def spec(self, name: str) -> Tool | None:
        """The description of tool ``name`` (None: no such tool)."""
        entry = self._entries.get(name)
        return None if entry is None else entry.spec

    def arguments_type(self, name: str) -> type[msgspec.Struct]:
        """The Struct the arguments of tool ``name`` are validated as."""
        return self._entries[name].arguments

    def prepare(self, env: Any, name: str, arguments: Any) -> Callable[..., Any]:
        """The call ``name(**arguments)`` on ``env``, validated and ready to run: a function
        of no arguments (``async def`` for an async tool, see :meth:`is_async`) returning the
        call's :class:`ToolResult`, with whatever the tool raised as its ``error``.

        Raises:
            ToolCallError: no such tool, or the arguments do not fit.
        """
        entry = self._entries.get(name)
        if entry is None:
            offered = ", ".join(self._entries) or "none"
            raise ToolCallError(
                f"{self.env_name} has no tool {name!r} (its tools: {offered})",
                [{"type": "value_error", "loc": ["name"], "msg": f"unknown tool {name!r}"}],
            )
        keywords = entry.keywords(arguments)
        method = getattr(env, entry.method)
        if entry.is_async:

            async def call_async() -> ToolResult:
                try:
                    value = await method(**keywords)
                except Exception as exc:
                    return _failed(name, exc)
                return _result(name, value)

            return call_async

        def call() -> ToolResult:
            try:
                value = method(**keywords)
            except Exception as exc:
                return _failed(name, exc)
            return _result(name, value)

        return call


_TOOLBOXES: dict[type[Any], Toolbox] = {}


def toolbox(env_cls: type[Any]) -> Toolbox:
    """The :class:`Toolbox` of ``env_cls`` (built once per class)."""
    found = _TOOLBOXES.get(env_cls)
    if found is None:
        found = _TOOLBOXES[env_cls] = Toolbox(env_cls)
    return found


def _marked(env_cls: type[Any]) -> Iterator[tuple[str, Any]]:
    """The ``@tool`` methods of ``env_cls`` and its bases, in definition order, each as
    ``env_cls`` has it (a subclass's override of a tool stays that tool, with its options)."""
    seen: set[str] = set()
    for klass in reversed(env_cls.__mro__):
        for attribute, value in vars(klass).items():
            function = getattr(value, "__func__", value)
            if attribute in seen or not hasattr(function, _MARK):
                continue
            seen.add(attribute)
            method = getattr(env_cls, attribute)
            if not hasattr(method, _MARK):
                setattr(getattr(method, "__func__", method), _MARK, getattr(function, _MARK))
            yield attribute, method


def _result(name: str, value: Any) -> ToolResult:
    if isinstance(value, ToolResult):
        if not value.tool_name:
            value.tool_name = name
        return value
    if isinstance(value, Observation):
        return ToolResult(
            tool_name=name,
            result=public_fields(value, RESERVED_OBSERVATION_FIELDS),
            reward=value.reward,
            done=value.done,
            metadata=value.metadata,
        )
    return ToolResult(tool_name=name, result=value)


def _failed(name: str, exc: Exception) -> ToolResult:
    return ToolResult(tool_name=name, error=ToolError(type=type(exc).__name__, message=str(exc)))


_ARG_LINE = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The summary (first paragraph) and the ``Args:`` descriptions of a Google-style
    docstring."""
    summary_lines: list[str] = []
    for line in doc.splitlines():
        if not line.strip():
            break
        summary_lines.append(line.strip())
    described: dict[str, str] = {}
    in_args, current, indent = False, None, 0
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            in_args, current = True, None
            continue
        if not in_args:
            continue
        if not stripped:
            continue
        line_indent = len(line) - len(line.lstrip())
        if line_indent == 0:  # the next section
            in_args = False
            continue
        match = _ARG_LINE.match(stripped)
        if match and (current is None or line_indent <= indent):
            current, indent = match[1], line_indent
            described[current] = match[2]
        elif current is not None:
            described[current] = f"{described[current]} {stripped}".strip()
    return " ".join(summary_lines), described
