"""An env's tools in MCP's terms, for every route that speaks JSON-RPC: ``tools/list`` and
``tools/call`` answered for one env instance, and a tool result in the shapes upstream OpenEnv's
clients read.

MCP's ``CallToolResult`` (``content``, ``structuredContent``, ``isError``) is what any MCP
client reads; upstream 0.10's ``MCPToolClient`` reads ``data`` (its server passes on FastMCP's
result object), so ours carries both. The step's reward and done flag ride in ``_meta`` under
``openenv``. A result that is not an object is wrapped as ``{"result": value}`` in
``structuredContent``, with an ``outputSchema`` to match (MCP wants objects there).
"""

from __future__ import annotations

from typing import Any

import msgspec

from openenv.server.env_call import EnvCaller, EnvCallError, StepTimeout
from openenv.server.tools import Toolbox, ToolCallError
from openenv.tools import Tool, ToolResult

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "RpcError",
    "call_result",
    "handle_tool_rpc",
    "mcp_tool",
    "rpc_error",
    "rpc_result",
    "upstream_tool_observation",
]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

_json = msgspec.json.Encoder()


class RpcError(Exception):
    """A JSON-RPC error: ``code`` and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def rpc_result(call_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": call_id, "result": result}


def rpc_error(call_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": call_id, "error": {"code": code, "message": message}}


def _wrapped(spec: Tool) -> bool:
    """Whether the tool's result is wrapped as ``{"result": value}`` for MCP."""
    schema = spec.output_schema
    return schema is None or schema.get("type") != "object"


def mcp_tool(spec: Tool) -> dict[str, Any]:
    """A tool as MCP lists it: ``name``, ``description``, ``inputSchema``, ``outputSchema``."""
    listed: dict[str, Any] = {
        "name": spec.name,
        "description": spec.description,
        "inputSchema": spec.input_schema,
    }
    if spec.output_schema is not None:
        listed["outputSchema"] = (
            {
                "type": "object",
                "properties": {"result": spec.output_schema},
                "required": ["result"],
            }
            if _wrapped(spec)
            else spec.output_schema
        )
    return listed


def call_result(result: ToolResult, spec: Tool | None = None) -> dict[str, Any]:
    """A tool call's :class:`ToolResult` as MCP's ``CallToolResult`` (plus upstream's
    ``data``)."""
    meta = {"openenv": {"reward": result.reward, "done": result.done}}
    if result.error is not None:
        text = f"{result.error.type}: {result.error.message}"
        return {"content": [{"type": "text", "text": text}], "isError": True, "_meta": meta}
    value = msgspec.to_builtins(result.result)
    text = value if isinstance(value, str) else _json.encode(value).decode()
    reply: dict[str, Any] = {
        "content": [{"type": "text", "text": text}],
        "isError": False,
        "data": value,
        "_meta": meta,
    }
    if spec is not None and spec.output_schema is not None:
        reply["structuredContent"] = {"result": value} if _wrapped(spec) else value
    return reply


def upstream_tool_observation(result: ToolResult, spec: Tool | None = None) -> dict[str, Any]:
    """A :class:`ToolResult` as upstream 0.10's ``CallToolObservation`` fields: ``result`` as
    FastMCP's result object serialises (its clients read ``result["data"]``), ``error`` as
    ``{"error_type", "message"}``."""
    if result.error is not None:
        error = {"error_type": "execution_error", "message": result.error.message}
        return {"tool_name": result.tool_name, "result": None, "error": error}
    mcp = call_result(result, spec)
    return {
        "tool_name": result.tool_name,
        "result": {
            "content": mcp["content"],
            "structured_content": mcp.get("structuredContent"),
            "meta": None,
            "data": mcp["data"],
            "is_error": False,
        },
        "error": None,
    }


def tool_arguments(arguments: Any) -> Any:
    """Arguments as sent: a JSON string (upstream's web interface sends them so) is decoded."""
    if isinstance(arguments, str):
        try:
            return msgspec.json.decode(arguments)
        except (ValueError, RecursionError) as exc:
            raise ToolCallError(f"arguments are not valid JSON: {exc}") from None
    return {} if arguments is None else arguments


async def call_tool(
    tools: Toolbox, caller: EnvCaller, name: Any, arguments: Any
) -> tuple[ToolResult, Tool | None]:
    """Run tool ``name`` on ``caller``'s env.

    Raises:
        ToolCallError: no such tool, or arguments that do not fit.
        EnvCallError: the env raised.
        StepTimeout: the call exceeded the step time limit.
    """
    if not isinstance(name, str) or not name:
        raise ToolCallError("tools/call needs params.name, a tool's name")
    prepared = tools.prepare(caller.env, name, tool_arguments(arguments))
    result: ToolResult = await caller.call(prepared)
    return result, tools.spec(name)


async def handle_tool_rpc(
    tools: Toolbox, caller: EnvCaller, method: str, params: dict[str, Any]
) -> dict[str, Any]:
    """The JSON-RPC result of ``tools/list`` or ``tools/call`` for ``caller``'s env.

    Raises:
        RpcError: an unknown method, a call that names no tool or whose arguments do not fit
            (``INVALID_PARAMS``, the message naming the argument), a call past the time limit.
    """
    if method == "tools/list":
        return {"tools": [mcp_tool(spec) for spec in tools.specs]}
    if method == "tools/call":
        try:
            result, spec = await call_tool(
                tools, caller, params.get("name"), params.get("arguments")
            )
        except ToolCallError as exc:
            raise RpcError(INVALID_PARAMS, str(exc)) from None
        except (EnvCallError, StepTimeout) as exc:
            raise RpcError(INTERNAL_ERROR, exc.message) from None
        return call_result(result, spec)
    raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method}")
