"""``create_app``: the Starlette application that serves one environment type."""

from __future__ import annotations

import hmac
import logging
import uuid
from typing import Any
from urllib.parse import parse_qs

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send

from openenv.protocol import (
    FORK_SCHEME,
    PROTOCOL_VERSION,
    SUBPROTOCOL,
    CloseCode,
    Codec,
    Error,
    ErrorCode,
    Hello,
    request_type,
)
from openenv.server.config import ServerConfig
from openenv.server.dialect import Dialect, serve_asgi
from openenv.server.env_call import MAX_ERROR_CHARS
from openenv.server.environment import Environment
from openenv.server.forking import ParkedFork, TicketBook
from openenv.server.http_routes import http_routes
from openenv.server.http_sessions import HttpSessions, SessionRefused
from openenv.server.mcp import McpEndpoint
from openenv.server.metrics import ServerMetrics, metrics_endpoint
from openenv.server.session import Session
from openenv.server.upstream import UpstreamCodec, UpstreamSession
from openenv.server.ws_protocol import DIRECT_EXTENSION
from openenv.upstream import UpstreamCode

__all__ = ["create_app"]

log = logging.getLogger("openenv.server")


class _EnvServer:
    """What every session of one app shares: the env type, its codec, limits and counters."""

    def __init__(
        self,
        env_cls: type[Environment[Any, Any, Any]],
        env_kwargs: dict[str, Any],
        config: ServerConfig,
    ) -> None:
        self.env_cls = env_cls
        self.env_kwargs = env_kwargs
        self.config = config
        self.codec = Codec(request_type(env_cls.action_type))
        self.upstream_codec = UpstreamCodec(env_cls.action_type)
        self.schemas = {
            "action_schema": msgspec.json.schema(env_cls.action_type),
            "observation_schema": msgspec.json.schema(env_cls.observation_type),
            "state_schema": msgspec.json.schema(env_cls.state_type),
        }
        self.active_sessions = 0  # includes forks parked under a ticket
        self.sessions_served = 0
        self.forks = TicketBook(config.token, config.fork_ticket_ttl, self.reserve, self.release)
        self.metrics = ServerMetrics() if config.metrics else None
        self._render_metrics: Any = None  # built on the first scrape
        self.http_sessions = HttpSessions(self.make_env, self.reserve, self.release, config)

    def make_env(self) -> Environment[Any, Any, Any]:
        """A new instance of the env."""
        return self.env_cls(**self.env_kwargs)

    def reserve(self, count: int) -> bool:
        """Take ``count`` session slots if they are all free."""
        if self.active_sessions + count > self.config.max_sessions:
            return False
        self.active_sessions += count
        return True

    def release(self, count: int) -> None:
        """Give back slots taken by :meth:`reserve`."""
        self.active_sessions -= count

    def authorized(self, scope: Scope) -> bool:
        if self.config.token is None:
            return True
        # Constant-time comparison: the time taken says nothing about the token.
        return hmac.compare_digest(_authorization(scope), f"Bearer {self.config.token}".encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ``/ws`` endpoint, as a plain ASGI app: one session per connection.

        The dialect is chosen here: our SDK asks for our subprotocol, anything else (upstream
        OpenEnv's clients, plain websocket tools) gets upstream's JSON dialect. A fork ticket
        stands in for the token, in our dialect only (upstream's has no forks).
        """
        await receive()  # websocket.connect
        ours = SUBPROTOCOL in scope.get("subprotocols", ())
        presented = _authorization(scope)
        fork = None
        if presented.startswith(_FORK_PREFIX):
            ticket = presented[len(_FORK_PREFIX) :].decode("ascii", "replace")
            if not ours:
                self._refused("dialect")
                await send({"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION})
                return
            fork = self.forks.redeem(ticket)
            if fork is None:
                log.warning(
                    "refused a fork ticket from %s: used, expired or not ours",
                    _peer(scope),
                    extra={"peer": _peer(scope), "reason": "ticket"},
                )
                if self.metrics is not None:
                    self.metrics.tickets_refused += 1
                await send({"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION})
                return
        elif not self.authorized(scope):
            # Closing before accept refuses the handshake (HTTP 403): no env is ever created.
            log.warning(
                "refused a session from %s: missing or wrong token",
                _peer(scope),
                extra={"peer": _peer(scope), "reason": "token"},
            )
            self._refused("token")
            await send({"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION})
            return
        if not ours and fork is None:
            attach_to = _session_query(scope)
            if attach_to is not None:
                await send({"type": "websocket.accept"})
                await self._serve_attached(attach_to, scope, receive, send)
                return
        await self._session(scope, receive, send, ours, fork)

    async def _session(
        self, scope: Scope, receive: Receive, send: Send, ours: bool, fork: ParkedFork | None
    ) -> None:
        """Admission, in one place: a slot (a fork's is taken already), the env, the session
        in its dialect until it ends, then the slot back."""
        try:
            await send(
                {"type": "websocket.accept", **({"subprotocol": SUBPROTOCOL} if ours else {})}
            )
        except BaseException:
            if fork is not None:
                self.forks.discard(fork.env)
            raise
        if fork is None and not self.reserve(1):
            log.warning(
                "refused a session from %s: at capacity",
                _peer(scope),
                extra={"peer": _peer(scope), "reason": "capacity"},
            )
            self._refused("capacity")
            await self._refuse_capacity(send, ours)
            return
        self.sessions_served += 1
        if self.metrics is not None:
            self.metrics.sessions_opened["openenv" if ours else "upstream"] += 1
        session_id = uuid.uuid4().hex
        origin = f"as a fork of {fork.parent}" if fork is not None else f"from {_peer(scope)}"
        fields: dict[str, Any] = {"session_id": session_id, "peer": _peer(scope)}
        if fork is not None:
            fields["forked_from"] = fork.parent
        log.info(
            "session %s opened %s (%d active)",
            session_id,
            origin,
            self.active_sessions,
            extra=fields,
        )
        try:
            try:
                dialect = self._dialect(session_id, ours, fork)
            except Exception as exc:
                log.warning(
                    "session %s: the env could not be created",
                    session_id,
                    exc_info=True,
                    extra={"session_id": session_id},
                )
                await self._refuse_env(send, ours, exc)
                return
            await _serve(dialect, scope, receive, send)
        finally:
            self.release(1)
            log.info(
                "session %s closed (%d active)",
                session_id,
                self.active_sessions,
                extra={"session_id": session_id},
            )

    def _dialect(self, session_id: str, ours: bool, fork: ParkedFork | None) -> Dialect:
        metrics = self.metrics
        if not ours:
            env = self.env_cls(**self.env_kwargs)
            return UpstreamSession(env, self.upstream_codec, self.config, metrics)
        if fork is not None:
            hello = self._hello(session_id, forked_from=fork.parent)
            return Session(
                fork.env, self.codec, hello, self.config, self.forks, fork.was_reset, metrics
            )
        env = self.env_cls(**self.env_kwargs)
        hello = self._hello(session_id)
        return Session(env, self.codec, hello, self.config, self.forks, metrics=metrics)

    def _hello(self, session_id: str, forked_from: str | None = None) -> Hello:
        return Hello(
            protocol=PROTOCOL_VERSION,
            env=self.env_cls.env_name(),
            session_id=session_id,
            forked_from=forked_from,
            **self.schemas,
        )

    async def _refuse_capacity(self, send: Send, ours: bool) -> None:
        limit = self.config.max_sessions
        message = f"server is at capacity ({limit} sessions); retry later or use another server"
        if ours:
            refusal = self.codec.encode(Error(code=ErrorCode.CAPACITY, message=message))
            await send({"type": "websocket.send", "bytes": refusal})
        else:
            error = self.upstream_codec.error(
                UpstreamCode.CAPACITY_REACHED,
                message,
                active_sessions=self.active_sessions,
                max_sessions=limit,
            )
            await send({"type": "websocket.send", "text": error})
        await send(
            {"type": "websocket.close", "code": CloseCode.TRY_AGAIN_LATER, "reason": "capacity"}
        )

    async def _refuse_env(self, send: Send, ours: bool, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        if ours:
            error = Error(
                code=ErrorCode.ENV_ERROR, message=f"the env could not be created: {message}"
            )
            await send({"type": "websocket.send", "bytes": self.codec.encode(error)})
        else:
            text = self.upstream_codec.error(UpstreamCode.FACTORY_ERROR, message)
            await send({"type": "websocket.send", "text": text})
        await send({"type": "websocket.close", "code": CloseCode.INTERNAL_ERROR})

    def _refused(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.refused(reason)

    async def metrics_route(self, request: Request) -> Response:
        """``/metrics``: Prometheus text; with a server token, only for requests bearing it."""
        if not self.authorized(request.scope):
            headers = {"WWW-Authenticate": "Bearer"}
            return PlainTextResponse("missing or wrong bearer token\n", 401, headers)
        if self.metrics is None:
            return PlainTextResponse("metrics are off on this server (OPENENV_METRICS=0)\n", 404)
        if self._render_metrics is None:
            try:
                collector = self.metrics.collector(lambda: self.active_sessions, self.forks.__len__)
                self._render_metrics = metrics_endpoint(collector)
            except ImportError:
                message = "install prometheus-client (openenv-rl[server]) to serve metrics\n"
                return PlainTextResponse(message, 501)
        body, content_type = self._render_metrics()
        return Response(body, headers={"Content-Type": content_type})

    async def _serve_attached(
        self, session_id: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Upstream's dialect on the env of a session created over HTTP (``/ws?session_id=``,
        upstream 0.10's ``MCPToolClient``); the session outlives the WebSocket."""
        codec = self.upstream_codec
        try:
            session = self.http_sessions.attach(session_id)
        except SessionRefused as exc:
            self._refused("other")
            error = codec.error(UpstreamCode.SESSION_ERROR, exc.message)
            await send({"type": "websocket.send", "text": error})
            await send({"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION})
            return
        try:
            caller = session.caller
            dialect = UpstreamSession(caller.env, codec, self.config, self.metrics, caller)
            await _serve(dialect, scope, receive, send)
        finally:
            await self.http_sessions.detach(session)

    async def health(self, request: Request) -> JSONResponse:
        # "healthy" is upstream's word; its clients and readiness probes look for it.
        return JSONResponse({"status": "healthy", "active_sessions": self.active_sessions})

    async def info(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "env": self.env_cls.env_name(),
                "protocol": PROTOCOL_VERSION,
                "max_sessions": self.config.max_sessions,
                "max_frame_bytes": self.config.max_frame_bytes,
                "active_sessions": self.active_sessions,
                "sessions_served": self.sessions_served,
                "forks_parked": len(self.forks),
                "fork_ticket_ttl": self.config.fork_ticket_ttl,
                **self.schemas,
            }
        )


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "a unix socket"


_FORK_PREFIX = f"{FORK_SCHEME} ".encode()


def _session_query(scope: Scope) -> str | None:
    """The ``session_id`` of ``/ws?session_id=...``, if given."""
    query = scope.get("query_string", b"")
    if b"session_id=" not in query:
        return None
    values = parse_qs(query.decode("latin-1")).get("session_id")
    return values[-1] if values else None


def _authorization(scope: Scope) -> bytes:
    presented = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            presented = value
    return presented


async def _serve(dialect: Dialect, scope: Scope, receive: Receive, send: Send) -> None:
    """Run an accepted session to its end, then release its env: on the connection itself
    when uvicorn runs our protocol (frames skip ASGI altogether), else over ASGI messages."""
    try:
        direct = scope.get("extensions", {}).get(DIRECT_EXTENSION)
        if direct is not None:
            await direct["serve"](dialect)
        else:
            await serve_asgi(dialect, receive, send)
    finally:
        await dialect.release()


def create_app(
    env_cls: type[Environment[Any, Any, Any]],
    *,
    config: ServerConfig | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> Starlette:
    """Build the app serving ``env_cls``: one new instance per WebSocket session.

    With a token in ``config``, every route but ``/health`` wants it.

    Routes: ``/ws`` (the sessions, in our dialect or upstream OpenEnv's), ``/health``,
    ``/info`` (name, protocol, limits, schemas), ``/metrics`` (Prometheus text, see
    ``openenv.server.metrics``), and upstream's stateless HTTP routes
    ``/reset``, ``/step``, ``/state``, ``/schema``, ``/metadata`` (``openenv.server.http_routes``),
    and ``/mcp`` (the env's tools for MCP clients and upstream's session-bound tool clients,
    ``openenv.server.mcp``).

    Args:
        env_cls: the Environment subclass to serve.
        config: limits and token; by default read from ``OPENENV_*`` variables at call time.
        env_kwargs: keyword arguments for every ``env_cls(...)``.
    """
    server = _EnvServer(env_cls, env_kwargs or {}, config or ServerConfig.from_env())
    app = _EnvApp(
        routes=[
            WebSocketRoute("/ws", server),
            Route("/health", server.health),
            Route("/info", server.info),
            Route("/metrics", server.metrics_route),
            *http_routes(
                env_cls, server.env_kwargs, server.config, server.authorized, server.schemas
            ),
            Route(
                "/mcp",
                McpEndpoint(
                    env_cls, server.make_env, server.config, server.authorized, server.http_sessions
                ),
                methods=["GET", "POST", "DELETE"],
            ),
        ]
    )
    app.state.openenv = server
    return app


class _EnvApp(Starlette):
    """Starlette, with ``/ws`` connections handed straight to the session handler.

    Each message of a session would otherwise cross Starlette's middleware and WebSocket
    wrappers twice (a few microseconds a step, most of what separates us from a bare
    websockets server at hundreds of sessions); the route stays listed for introspection.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in _OPEN_PATHS:
            # The token, checked once for every HTTP route (each route's own check stays as a
            # second line): a route added later cannot be left open by mistake.
            if not self.state.openenv.authorized(scope):
                await _unauthorized(scope, receive, send)
                return
        if scope["type"] != "websocket":
            await super().__call__(scope, receive, send)
        elif scope["path"] == "/ws":
            await self.state.openenv(scope, receive, send)
        else:
            await _not_found(scope, receive, send)


_OPEN_PATHS = frozenset({"/health"})  # for probes; says nothing but "healthy" and a count


async def _unauthorized(scope: Scope, receive: Receive, send: Send) -> None:
    headers = {"WWW-Authenticate": "Bearer"}
    response = JSONResponse({"detail": "missing or wrong bearer token"}, 401, headers)
    await response(scope, receive, send)


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """Refuse a WebSocket on an unknown path with 404 (Starlette's 403 reads as an auth
    failure). Servers without ASGI's denial-response extension can only say 403."""
    await receive()  # websocket.connect
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION})
        return
    body = f"no WebSocket route at {scope['path']}: env sessions are at /ws".encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    await send({"type": "websocket.http.response.start", "status": 404, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})
