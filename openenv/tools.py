"""What a tool call exchanges: a tool's description, its result and its error. No I/O here.

A tool env (``openenv.server.tool``) offers typed methods as tools beside its ``step``. Clients
list them (:class:`Tool`: name, description, JSON Schemas) and call them by name; each call is a
step of the episode, answered with a :class:`ToolResult` observation that carries the tool's
return value, or the error it raised, together with the step's reward and done flag.

The same tools are served in our dialect (``list_tools`` / ``call_tool`` requests), in upstream
OpenEnv's (``call_tool`` / ``list_tools`` step actions and ``{"type": "mcp"}`` JSON-RPC) and
over MCP at ``/mcp``; ``docs/protocol.md`` has the shapes.
"""

from __future__ import annotations

from typing import Any

import msgspec

from openenv.types import Observation

__all__ = ["RESERVED_TOOL_NAMES", "Tool", "ToolError", "ToolResult", "inline_schema"]

#: Names a tool may not take: upstream OpenEnv keeps them for the env's own methods.
RESERVED_TOOL_NAMES = frozenset({"reset", "step", "state", "close"})


class Tool(msgspec.Struct, omit_defaults=True):
    """A tool an env offers.

    Attributes:
        name: what a call names, e.g. ``"echo_message"``.
        description: what the tool does (its docstring's summary).
        input_schema: JSON Schema of the arguments object (from the method's type hints, with
            each argument's description from the docstring).
        output_schema: JSON Schema of the result (from the return annotation), when declared.
    """

    name: str
    description: str = ""
    input_schema: dict[str, Any] = {}
    output_schema: dict[str, Any] | None = None


class ToolError(msgspec.Struct):
    """A tool raised instead of returning: the error is the call's result, for the agent to
    read (the session goes on).

    Attributes:
        type: the exception's class name, e.g. ``"FileNotFoundError"``.
        message: its text.
    """

    type: str
    message: str


class ToolResult(Observation):
    """The observation a tool call produces: ``result`` (the tool's return value, plain data)
    or ``error``, and, as for any step, ``reward`` and ``done`` from the env.

    A tool that returns an :class:`~openenv.types.Observation` sets the step's reward, done
    flag and metadata itself; its other fields become ``result``. A tool that returns a
    ``ToolResult`` has it passed on as it is.
    """

    tool_name: str = ""
    result: Any = None
    error: ToolError | None = None

    @property
    def ok(self) -> bool:
        """Whether the tool returned (rather than raised)."""
        return self.error is None


def inline_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """msgspec's schema (``{"$ref": "#/$defs/X", "$defs": ...}``) with X's definition at the
    top, as pydantic's are (upstream's clients and MCP's ``inputSchema`` read ``properties``
    there); ``$defs`` stays only when references into it remain."""
    ref = schema.get("$ref", "")
    defs: dict[str, Any] = schema.get("$defs", {})
    name = ref.removeprefix("#/$defs/")
    if not ref.startswith("#/$defs/") or name not in defs:
        return schema
    others = {key: value for key, value in defs.items() if key != name}
    root = dict(defs[name])
    if others or f'"#/$defs/{name}"'.encode() in msgspec.json.encode(root):
        root["$defs"] = defs
    return root
