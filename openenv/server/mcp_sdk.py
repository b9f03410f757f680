"""MCP over streamable HTTP at ``/mcp``, served by the official ``mcp`` SDK (the ``mcp`` extra).

The SDK does the protocol (the ``initialize`` handshake, sessions, SSE or JSON responses, the
2026 single-exchange requests); this module gives it the env's tools. Each MCP session gets an
env of its own, held as an HTTP-created session under the MCP session's id
(:class:`~openenv.server.http_sessions.HttpSessions`: it takes a session slot, is reset once and
is reaped when idle); a request that belongs to no MCP session (the stateless 2026 protocol)
gets a fresh env for that one call. ``DELETE /mcp`` ends the MCP session and its env.

The SDK's session manager runs a task group for the app's lifetime; it is started on the first
MCP request, so any ASGI host serves it without a lifespan hook.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import mcp_types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.types import Receive, Scope, Send

from openenv.server.config import ServerConfig
from openenv.server.env_call import EnvCaller, EnvCallError
from openenv.server.http_sessions import HttpSessions, SessionRefused
from openenv.server.mcp_shapes import call_result, call_tool, mcp_tool
from openenv.server.tools import Toolbox, ToolCallError

__all__ = ["McpSdkApp"]

_SESSION_HEADER = "mcp-session-id"


class McpSdkApp:
    """The SDK's streamable HTTP app for one env class's tools.

    Args:
        name: the server name MCP clients see.
        tools: the env's tools.
        make_env: creates one env instance (for requests outside any MCP session).
        sessions: where each MCP session's env is held.
        config: the server's limits.
    """

    def __init__(
        self,
        name: str,
        tools: Toolbox,
        make_env: Any,
        sessions: HttpSessions,
        config: ServerConfig,
    ) -> None:
        self._tools = tools
        self._make_env = make_env
        self._sessions = sessions
        self._config = config
        server: Server[Any] = Server(
            name, on_list_tools=self._list_tools, on_call_tool=self._call_tool
        )
        self._manager = StreamableHTTPSessionManager(
            server,
            session_idle_timeout=config.session_idle_timeout,
            max_sessions=config.max_sessions,
        )
        self._running: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._start()
        session_id = _header(scope, _SESSION_HEADER.encode())
        await self._manager.handle_request(scope, receive, send)
        if scope["method"] == "DELETE" and session_id is not None:
            with contextlib.suppress(SessionRefused):
                await self._sessions.close(session_id)

    async def _start(self) -> None:
        """Run the SDK's session manager (once, for the app's lifetime)."""
        if self._running is not None:
            return
        async with self._lock:
            if self._running is not None:
                return
            started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._task = asyncio.get_running_loop().create_task(self._run(started))
            await started
            self._running = started

    async def _run(self, started: asyncio.Future[None]) -> None:
        async with self._manager.run():
            started.set_result(None)
            await asyncio.Event().wait()  # until the loop ends

    async def _list_tools(
        self, ctx: Any, params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListToolsResult:
        tools = [mcp_types.Tool.model_validate(mcp_tool(spec)) for spec in self._tools.specs]
        return mcp_types.ListToolsResult(tools=tools)

    async def _call_tool(
        self, ctx: Any, params: mcp_types.CallToolRequestParams
    ) -> mcp_types.CallToolResult:
        request = getattr(ctx, "request", None)
        session_id = request.headers.get(_SESSION_HEADER) if request is not None else None
        try:
            caller, owned = await self._caller(session_id)
        except (SessionRefused, EnvCallError) as exc:
            return _refused(str(exc))
        try:
            result, spec = await call_tool(self._tools, caller, params.name, params.arguments)
        except ToolCallError as exc:
            return _refused(str(exc))
        except EnvCallError as exc:
            return _refused(exc.message)
        finally:
            if owned:
                await caller.release()
        return mcp_types.CallToolResult.model_validate(call_result(result, spec))

    async def _caller(self, session_id: str | None) -> tuple[EnvCaller, bool]:
        """The env of MCP session ``session_id`` (made on its first call), or a fresh one
        (reset, released after the call) for a request outside any session."""
        if session_id is not None:
            try:
                return self._sessions.use(session_id).caller, False
            except SessionRefused:
                await self._sessions.create(session_id)
                return self._sessions.use(session_id).caller, False
        caller = EnvCaller(self._make_env(), self._config.step_timeout)
        await caller.call(caller.env.reset)
        return caller, True


def _refused(message: str) -> mcp_types.CallToolResult:
    """A call that did not run, answered as MCP answers tool errors (``isError``)."""
    text = mcp_types.TextContent(type="text", text=message)
    return mcp_types.CallToolResult(content=[text], is_error=True)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
