"""``/mcp``: the env's tools for MCP clients, and upstream OpenEnv 0.10's session-bound flow.

Two kinds of client reach this one route, told apart by what they accept:

- **MCP clients** (streamable HTTP; they accept ``text/event-stream``) are served by the
  official ``mcp`` SDK (``openenv.server.mcp_sdk``, the ``mcp`` extra): ``initialize``,
  ``tools/list``, ``tools/call``, each MCP session with an env of its own.
- **Plain JSON-RPC** (``application/json`` only), as upstream 0.10's server answers it and its
  ``MCPToolClient`` speaks it: ``openenv/session/create`` and ``openenv/session/close``
  (sessions held by :class:`~openenv.server.http_sessions.HttpSessions`), ``tools/list`` and
  ``tools/call`` on the session named by ``params.session_id``, or on a fresh env when none is
  named (stateless, as upstream's).

Both need the server's bearer token when it has one (401 without).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from openenv.server.config import ServerConfig
from openenv.server.env_call import EnvCaller, EnvCallError, StepTimeout
from openenv.server.http_sessions import HttpSessions, SessionRefused
from openenv.server.mcp_shapes import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    RpcError,
    handle_tool_rpc,
    rpc_error,
    rpc_result,
)
from openenv.server.tools import Toolbox, toolbox

__all__ = ["McpEndpoint"]

log = logging.getLogger("openenv.server")

_SERVER_ERROR = -32000  # JSON-RPC's implementation-defined errors: the server is full


class McpEndpoint:
    """The ASGI app at ``/mcp`` for one env class.

    Args:
        env_cls: the env served; its ``@tool`` methods are the tools.
        make_env: creates one env instance.
        config: the server's limits.
        authorized: whether a request's scope carries the server's token.
        sessions: the app's HTTP-created sessions.
    """

    def __init__(
        self,
        env_cls: type[Any],
        make_env: Callable[[], Any],
        config: ServerConfig,
        authorized: Callable[[Scope], bool],
        sessions: HttpSessions,
    ) -> None:
        self.env_name: str = env_cls.env_name()
        self.tools: Toolbox = toolbox(env_cls)
        self._make_env = make_env
        self._config = config
        self._authorized = authorized
        self.sessions = sessions
        # The SDK's app, made on the first MCP request (importing the SDK takes a while, and
        # most sessions never need it); None if the mcp extra is not installed.
        self._sdk: Callable[[Scope, Receive, Send], Awaitable[None]] | bool | None = False

    def sdk(self) -> Callable[[Scope, Receive, Send], Awaitable[None]] | None:
        """The MCP SDK's ASGI app for streamable HTTP clients (None without the extra)."""
        if self._sdk is False:
            try:
                from openenv.server.mcp_sdk import McpSdkApp
            except ImportError:
                log.warning("an MCP client called /mcp, but the mcp extra is not installed")
                self._sdk = None
            else:
                self._sdk = McpSdkApp(
                    f"openenv {self.env_name}",
                    self.tools,
                    self._make_env,
                    self.sessions,
                    self._config,
                )
        assert self._sdk is not True
        return self._sdk

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._authorized(scope):
            response: Response = JSONResponse(
                {"detail": "missing or wrong bearer token"},
                401,
                {"WWW-Authenticate": "Bearer"},
            )
        elif _wants_mcp(scope):
            sdk = self.sdk()
            if sdk is not None:
                await sdk(scope, receive, send)
                return
            response = JSONResponse(
                {
                    "detail": "MCP over streamable HTTP needs the mcp extra on the server "
                    "(pip install 'openenv-rl[mcp]')"
                },
                406,
            )
        elif scope["method"] != "POST":
            response = JSONResponse({"detail": "POST a JSON-RPC 2.0 request"}, 405)
        else:
            request = Request(scope, receive)
            response = JSONResponse(await self._answer(await request.body()))
        await response(scope, receive, send)

    async def _answer(self, body: bytes) -> dict[str, Any]:
        try:
            call = msgspec.json.decode(body)
        except (ValueError, RecursionError):
            return rpc_error(None, PARSE_ERROR, "Parse error")
        if not isinstance(call, dict) or not isinstance(call.get("method"), str):
            return rpc_error(None, INVALID_REQUEST, "Invalid Request")
        call_id, method = call.get("id"), call["method"]
        params = call.get("params") or {}
        if not isinstance(params, dict):
            return rpc_error(call_id, INVALID_PARAMS, "Params must be an object")
        try:
            return rpc_result(call_id, await self._method(method, params))
        except RpcError as exc:
            return rpc_error(call_id, exc.code, exc.message)
        except SessionRefused as exc:
            code = _SERVER_ERROR if exc.capacity else INVALID_PARAMS
            return rpc_error(call_id, code, exc.message)

    async def _method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        sessions = self.sessions
        if method == "openenv/session/create":
            return {"session_id": await sessions.create()}
        if method == "openenv/session/close":
            if not params.get("session_id"):
                raise RpcError(INVALID_PARAMS, "Invalid params - 'session_id' is required")
            return await sessions.close(params["session_id"])
        session_id = params.get("session_id")
        if session_id:
            caller = sessions.use(session_id).caller
            return await handle_tool_rpc(self.tools, caller, method, params)
        # No session named: a fresh env for this one call, as upstream's stateless /mcp.
        try:
            caller = EnvCaller(self._make_env(), self._config.step_timeout)
        except Exception as exc:
            raise RpcError(INTERNAL_ERROR, f"the env could not be created: {exc!r}") from exc
        try:
            if method == "tools/call":  # a tool finds its env as after a reset
                try:
                    await caller.call(caller.env.reset)
                except (EnvCallError, StepTimeout) as exc:
                    raise RpcError(INTERNAL_ERROR, f"the env's reset failed: {exc}") from exc
            return await handle_tool_rpc(self.tools, caller, method, params)
        finally:
            await caller.release()


def _wants_mcp(scope: Scope) -> bool:
    """Whether the request comes from a streamable HTTP MCP client (it accepts an event
    stream, or names an MCP session); plain JSON-RPC accepts JSON only."""
    for name, value in scope["headers"]:
        if name == b"accept" and b"text/event-stream" in value:
            return True
        if name == b"mcp-session-id":
            return True
    return False
