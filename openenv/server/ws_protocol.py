"""Our WebSocket connection: websockets' Sans-I/O ``ServerProtocol`` on an asyncio transport.

uvicorn parses the HTTP upgrade request and hands the connection to its ``ws`` implementation
(``uvicorn.Config(ws=...)``), constructed as ``ws(config=, server_state=, app_state=)``: that is
the seam this class plugs into. Everything past it is ours, written on websockets' public
Sans-I/O API, as websockets' own docs describe: bytes in through ``receive_data``, events out,
frames out through ``data_to_send``.

**The app stays ASGI up to the session.** The handshake becomes an ASGI ``websocket`` scope;
Starlette's app authenticates, refuses (403, or any status through the
``websocket.http.response`` extension) or accepts it. Once it accepts a session it hands the
connection a :class:`~openenv.server.dialect.Dialect` through the ``openenv.direct`` extension
(:meth:`EnvWebSocketProtocol.serve_session`), and from then on each frame goes from
``data_received`` through the parser into ``dialect.handle`` and its reply straight back to the
transport: no queue, task or dict per message. An app that does not ask for that gets plain
ASGI ``receive``/``send``.

**One backpressure rule.** A message is handled only while nothing holds the connection back:
no reply still being computed (an async or blocking env; replies stay in order), no write
buffer over its high-water mark (a client that sends but does not read), and, for a plain ASGI
app, fewer than :data:`MAX_UNREAD` messages it has not received yet. Messages that arrive
meanwhile wait, and reading pauses until they are handled. The write buffer is checked after
every reply, not once per read, so many requests in one read cannot pile up replies; pongs are
written by the parser as pings arrive and count against the same buffer, so a ping flood whose
pongs are never read stops being read too. What a connection holds is thus bounded by one read
of input, the transport's high-water mark and one reply.

**Closing.** A session's last frame and its close frame are written before the transport is
half-closed, and the transport closes once the client closes its side, or after
:data:`CLOSE_TIMEOUT`: the client reads everything that was sent (a connection failed for a
frame over the size limit is half-closed and drained, so the client sees 1009, not a reset).
Nothing is sent once the closing handshake started, so an ordinary goodbye logs nothing.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
from collections.abc import Awaitable
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote

from websockets.datastructures import Headers
from websockets.frames import CloseCode as WebSocketCloseCode
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from openenv.observability.logs import Redact
from openenv.protocol import CloseCode
from openenv.server.dialect import Closing, Dialect, Outgoing, Reply, is_ready

__all__ = ["CLOSE_TIMEOUT", "DIRECT_EXTENSION", "MAX_UNREAD", "EnvWebSocketProtocol"]

MAX_UNREAD = 8  # messages a plain ASGI app has not received before reading pauses
CLOSE_TIMEOUT = 10.0  # seconds the client gets to close its side after the server's close
DIRECT_EXTENSION = "openenv.direct"  # ASGI scope extension: {"serve": serve_session}

log = logging.getLogger("openenv.server")
# websockets' own lines (each handshake header and a preview of each frame, at DEBUG): a
# filter masks Authorization values (token or fork ticket) and drops frame previews, wherever
# the record goes. A logger's filters apply to its own records only, hence one here.
wire_log = logging.getLogger("openenv.server.wire")
wire_log.addFilter(Redact())

_BINARY = Opcode.BINARY
_OPEN = State.OPEN
_DATA = frozenset({Opcode.BINARY, Opcode.TEXT, Opcode.CONT})


class EnvWebSocketProtocol(asyncio.Protocol):
    """Pass as uvicorn's ``ws``; uvicorn constructs one per upgraded connection.

    Reads the public attributes of uvicorn's ``Config`` (``loaded_app``, ``root_path``,
    ``asgi_version``, ``ws_max_size``, ``ws_ping_interval``, ``ws_ping_timeout``) and of its
    server state (``connections``, ``tasks``: so that a shutdown closes this connection and
    waits for its app).
    """

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self._app = config.loaded_app
        self._root_path: str = config.root_path
        self._asgi_version: str = config.asgi_version
        self._app_state = app_state
        self._connections: set[Any] = server_state.connections
        self._tasks: set[asyncio.Task[None]] = server_state.tasks
        self._ping_interval: float | None = config.ws_ping_interval
        self._ping_timeout: float | None = config.ws_ping_timeout
        self.conn = ServerProtocol(max_size=config.ws_max_size, logger=wire_log)
        self._loop = _loop or asyncio.get_event_loop()
        self._transport: asyncio.Transport = None  # type: ignore[assignment]
        self._peer: Any = None
        self._local: Any = None
        # The handshake: the 101 response, sent once the app accepts.
        self._response: Response | None = None
        self._answered = False  # the handshake got its response (101 or a refusal)
        # A refusal an app is sending through ASGI's websocket.http.response: status, headers
        # and the body so far.
        self._denial: tuple[int, list[tuple[bytes, bytes]], list[bytes]] | None = None
        self._app_task: asyncio.Task[None] | None = None
        # Incoming messages.
        self._events: collections.deque[Frame] = collections.deque()  # data frames waiting
        self._fragments: list[bytes] = []
        self._text = False
        self._dialect: Dialect | None = None
        self._in_flight: asyncio.Task[None] | None = None
        self._over: asyncio.Future[None] | None = None
        # A plain ASGI app's messages (None: the app has not started receiving).
        self._inbox: collections.deque[dict[str, Any]] | None = None
        self._inbox_waiter: asyncio.Future[None] | None = None
        # Flow control.
        self._write_paused = False
        self._writable: asyncio.Future[None] | None = None
        self._read_paused = False
        self._lost = False
        self._close_code = 1006
        # Timers.
        self._close_timer: asyncio.TimerHandle | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._pong_timer: asyncio.TimerHandle | None = None
        self._ping_payload: bytes | None = None

    # asyncio.Protocol.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._peer = transport.get_extra_info("peername")
        self._local = transport.get_extra_info("sockname")
        self._connections.add(self)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        events = conn.events_received()
        dialect = self._dialect
        for event in events:
            if event.__class__ is not Frame:
                self._handshake(cast(Request, event))
                continue
            frame = event
            # The hot path: a whole binary message to a session with nothing waiting before it.
            if (
                dialect is not None
                and frame.opcode is _BINARY
                and frame.fin
                and self._in_flight is None
                and not self._write_paused
                and not self._events
            ):
                try:
                    reply = dialect.handle(frame.data)  # type: ignore[arg-type]
                except Exception:
                    log.exception("session failed on a request")
                    reply = Closing(CloseCode.INTERNAL_ERROR, "internal error")
                if reply.__class__ is bytes and conn.state is _OPEN:
                    conn.send_binary(reply)
                    self._flush()
                else:
                    self._dispatch(reply)
            elif frame.opcode in _DATA:
                self._events.append(frame)
                self._work()
            elif frame.opcode is Opcode.PONG:
                self._pong(frame)
            elif frame.opcode is Opcode.CLOSE:
                self._end(conn.close_rcvd.code if conn.close_rcvd else 1005)
            # A ping was answered by the parser already; its pong goes out with _flush.
        if conn.parser_exc is not None:
            self._end(conn.close_sent.code if conn.close_sent else 1006)
        elif conn.handshake_exc is not None and not self._answered:
            self._refuse_bad_request()
        self._flush()
        self._flow()

    def eof_received(self) -> bool | None:
        self.conn.receive_eof()
        self._flush()
        return None  # the transport closes once what we wrote is flushed

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)
        self._work()
        self._flow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._connections.discard(self)
        for timer in (self._close_timer, self._ping_timer, self._pong_timer):
            if timer is not None:
                timer.cancel()
        self._end(self._close_code)
        for waiter in (self._writable, self._inbox_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def shutdown(self) -> None:
        """uvicorn's shutdown: a session gets 1012 (service restart), anything else is closed."""
        if self._lost:
            return
        if self._answered and self.conn.state is _OPEN:
            self._close(Closing(CloseCode.SERVICE_RESTART, "server shutting down"))
        elif not self._answered:
            self._reject(503, "the server is shutting down\n")
        else:
            self._transport.close()

    # Flow control: the one rule.

    def _blocked(self) -> bool:
        """Whether the next message must wait (see the module's doc)."""
        if self._in_flight is not None or self._write_paused:
            return True
        if self._dialect is not None:
            return False
        inbox = self._inbox
        return inbox is None or len(inbox) >= MAX_UNREAD

    def _work(self) -> None:
        """Handle waiting messages while nothing holds them back."""
        events = self._events
        while events and not self._blocked():
            frame = events.popleft()
            if frame.opcode is Opcode.CONT:
                self._fragments.append(frame.data)  # type: ignore[arg-type]
            else:
                self._text = frame.opcode is Opcode.TEXT
                self._fragments = [frame.data]  # type: ignore[list-item]
            if frame.fin:
                fragments, self._fragments = self._fragments, []
                data = fragments[0] if len(fragments) == 1 else b"".join(fragments)
                self._message(bytes(data))

    def _flow(self) -> None:
        """Read while nothing waits and the write buffer has room; else pause reading."""
        if self._lost:
            return
        hold = bool(self._events) or self._write_paused
        if self.conn.state is not _OPEN and self._answered:
            hold = False  # closing: read on, for the client's close frame or EOF
        if hold and not self._read_paused:
            self._read_paused = True
            self._transport.pause_reading()
        elif not hold and self._read_paused:
            self._read_paused = False
            self._transport.resume_reading()

    def _flush(self) -> None:
        """Write what the protocol has to send; half-close when it says so."""
        transport = self._transport
        for data in self.conn.data_to_send():
            if transport.is_closing():
                break
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                transport.write_eof()
            else:
                transport.close()
        if self._close_timer is None and self.conn.close_expected():
            self._close_timer = self._loop.call_later(CLOSE_TIMEOUT, transport.close)

    # Messages.

    def _message(self, data: bytes) -> None:
        message: bytes | str = data
        if self._text:
            try:
                message = data.decode()
            except UnicodeDecodeError:
                self.conn.fail(WebSocketCloseCode.INVALID_DATA, "invalid UTF-8 in a text frame")
                self._flush()
                self._end(WebSocketCloseCode.INVALID_DATA)
                return
        dialect = self._dialect
        if dialect is None:
            inbox = cast(collections.deque[dict[str, Any]], self._inbox)
            key = "text" if self._text else "bytes"
            inbox.append({"type": "websocket.receive", key: message})
            self._wake_receiver()
            return
        try:
            reply: Reply = dialect.handle(message)
        except Exception:
            log.exception("session failed on a request")
            reply = Closing(CloseCode.INTERNAL_ERROR, "internal error")
        self._dispatch(reply)

    def _dispatch(self, reply: Reply) -> None:
        if is_ready(reply):
            self._answer(reply)
        else:
            task = self._loop.create_task(self._answer_later(cast(Awaitable[Outgoing], reply)))
            self._in_flight = task

    async def _answer_later(self, reply: Awaitable[Outgoing]) -> None:
        try:
            outgoing = await reply
        except Exception:
            log.exception("session failed on a request")
            outgoing = Closing(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            self._in_flight = None
        if self._lost:
            return
        self._answer(outgoing)
        self._work()
        self._flow()

    def _answer(self, outgoing: Outgoing) -> None:
        if outgoing.__class__ is Closing:
            self._close(outgoing)
        else:
            self._send(cast(bytes | str, outgoing))

    def _send(self, frame: bytes | str) -> None:
        conn = self.conn
        if conn.state is not _OPEN:
            return  # the closing handshake started: nothing more goes out
        if frame.__class__ is bytes:
            conn.send_binary(frame)
        else:
            conn.send_text(frame.encode())  # type: ignore[union-attr]
        self._flush()

    def _close(self, closing: Closing) -> None:
        """The session's last frame (if any), then the close frame."""
        if closing.frame is not None:
            self._send(closing.frame)
        if self.conn.state is _OPEN:
            self.conn.send_close(closing.code, closing.reason)
            self._flush()
        self._end(closing.code)
        self._flow()

    def _end(self, code: int) -> None:
        """The session is over: drop what waits, wake whoever waits for the end."""
        self._close_code = code
        self._events.clear()
        self._stop_keepalive()
        over = self._over
        if over is not None and not over.done():
            over.set_result(None)
        self._wake_receiver()

    # The session, once the app accepted it.

    async def serve_session(self, dialect: Dialect) -> None:
        """Serve an accepted session on this connection with ``dialect`` until it ends."""
        self._dialect = dialect
        self._over = self._loop.create_future()
        if self._lost or self.conn.state is not _OPEN:
            return
        greeting = dialect.greeting()
        if greeting is not None:
            self._send(greeting)
        self._work()
        self._flow()
        await self._over
        if self._in_flight is not None:  # the session's env is released only after its call
            await asyncio.wait([self._in_flight])

    # Keepalive: a peer that stops answering pings is dropped.

    def _start_keepalive(self) -> None:
        if self._ping_interval:
            self._ping_timer = self._loop.call_later(self._ping_interval, self._ping)

    def _stop_keepalive(self) -> None:
        for timer in (self._ping_timer, self._pong_timer):
            if timer is not None:
                timer.cancel()
        self._ping_timer = self._pong_timer = None

    def _ping(self) -> None:
        self._ping_timer = None
        if self.conn.state is not _OPEN:
            return
        self._ping_payload = os.urandom(4)
        self.conn.send_ping(self._ping_payload)
        self._flush()
        if self._ping_timeout:
            self._pong_timer = self._loop.call_later(self._ping_timeout, self._missed_pong)
        else:
            self._start_keepalive()

    def _pong(self, frame: Frame) -> None:
        if self._ping_payload is None or bytes(frame.data) != self._ping_payload:
            return  # unsolicited, or an old one
        self._ping_payload = None
        if self._pong_timer is not None:
            self._pong_timer.cancel()
            self._pong_timer = None
            self._start_keepalive()

    def _missed_pong(self) -> None:
        self._pong_timer = None
        log.debug("dropped a WebSocket peer that missed a pong: %s", self._peer)
        self.conn.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        self._flush()
        self._end(CloseCode.INTERNAL_ERROR)
        self._transport.close()

    # The handshake, as an ASGI app sees it.

    def _handshake(self, request: Request) -> None:
        response = self.conn.accept(request)
        if response.status_code != 101:  # not a valid WebSocket upgrade
            self._answered = True
            self.conn.send_response(response)
            self._flush()
            self._transport.close()
            return
        self._response = response
        raw_path, _, query = request.path.partition("?")
        subprotocols = [
            token.strip()
            for header in request.headers.get_all("Sec-WebSocket-Protocol")
            for token in header.split(",")
        ]
        scope = {
            "type": "websocket",
            "asgi": {"version": self._asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "wss" if self._transport.get_extra_info("sslcontext") else "ws",
            "server": _address(self._local),
            "client": _address(self._peer),
            "root_path": self._root_path,
            "path": self._root_path + unquote(raw_path),
            "raw_path": (self._root_path + raw_path).encode("ascii", "replace"),
            "query_string": query.encode("ascii", "replace"),
            "headers": [
                (name.lower().encode("latin-1"), value.encode("latin-1", "replace"))
                for name, value in request.headers.raw_items()
            ],
            "subprotocols": subprotocols,
            "state": self._app_state.copy(),
            "extensions": {
                "websocket.http.response": {},
                DIRECT_EXTENSION: {"serve": self.serve_session},
            },
        }
        task = self._loop.create_task(self._run_app(scope))
        self._app_task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refuse_bad_request(self) -> None:
        """A request the parser could not read: websockets answers a line or header over its
        limits itself (414, 431); anything else gets a 400."""
        self._answered = True
        output = [data for data in self.conn.data_to_send() if data]
        if not output:
            output = [
                self.conn.reject(400, "not a valid WebSocket handshake request\n").serialize()
            ]
        for data in output:
            self._transport.write(data)
        self._transport.close()

    def _reject(self, status: int, body: str, headers: list[tuple[str, str]] | None = None) -> None:
        response = self.conn.reject(status, body)
        for name, value in headers or ():
            response.headers[name] = value
        self._answered = True
        self.conn.send_response(response)
        self._flush()
        self._transport.close()

    async def _run_app(self, scope: dict[str, Any]) -> None:
        failed = False
        try:
            await self._app(scope, self._receive, self._asgi_send)
        except OSError:
            pass  # the client went away while the app sent
        except Exception:
            failed = True
            log.exception("the app failed on a WebSocket request")
        if self._lost or self._transport.is_closing():
            return
        if not self._answered:
            if not failed:
                log.error("the app returned without answering a WebSocket handshake")
            self._reject(500, "internal server error\n")
        elif self.conn.state is _OPEN:
            self._close(Closing(CloseCode.INTERNAL_ERROR if failed else CloseCode.NORMAL))

    async def _receive(self) -> dict[str, Any]:
        inbox = self._inbox
        if inbox is None:
            if not self._answered:
                return {"type": "websocket.connect"}
            inbox = self._inbox = collections.deque()
            self._work()
            self._flow()
        while not inbox:
            if self._lost or self.conn.state is not _OPEN:
                return {"type": "websocket.disconnect", "code": self._close_code}
            self._inbox_waiter = self._loop.create_future()
            await self._inbox_waiter
        message = inbox.popleft()
        if self._events and len(inbox) < MAX_UNREAD:
            self._work()
            self._flow()
        return message

    def _wake_receiver(self) -> None:
        waiter, self._inbox_waiter = self._inbox_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _asgi_send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if self._lost or self._transport.is_closing():
            raise ConnectionResetError("the client went away")
        if not self._answered:
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                self._reject(403, "")
            elif kind == "websocket.http.response.start":
                self._denial = (message["status"], list(message.get("headers", [])), [])
                self._answered = True
            else:
                raise RuntimeError(f"unexpected ASGI message before the handshake: {kind}")
            return
        denial = self._denial
        if denial is not None:
            if kind != "websocket.http.response.body":
                raise RuntimeError(f"expected websocket.http.response.body, not {kind}")
            denial[2].append(message.get("body", b""))
            if not message.get("more_body", False):
                self._denial = None
                status, raw, body = denial
                headers = Headers([(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw])
                self.conn.send_response(Response(status, _reason(status), headers, b"".join(body)))
                self._flush()
                self._transport.close()
            return
        if kind == "websocket.send":
            while self._write_paused and not self._lost:
                self._writable = self._writable or self._loop.create_future()
                await self._writable
            if self._lost:
                raise ConnectionResetError("the client went away")
            data = message.get("bytes")
            self._send(data if data is not None else message.get("text") or "")
        elif kind == "websocket.close":
            code = message.get("code") or CloseCode.NORMAL
            self._close(Closing(code, message.get("reason") or ""))
        else:
            raise RuntimeError(f"unexpected ASGI message on an open WebSocket: {kind}")

    def _accept(self, message: dict[str, Any]) -> None:
        response = cast(Response, self._response)
        subprotocol = message.get("subprotocol")
        if subprotocol:
            response.headers["Sec-WebSocket-Protocol"] = subprotocol
        for name, value in message.get("headers", []):
            response.headers[name.decode("latin-1")] = value.decode("latin-1")
        self._answered = True
        self.conn.send_response(response)
        self._flush()
        self._start_keepalive()


def _address(info: Any) -> tuple[str, int] | None:
    """An ASGI ``client``/``server`` from a socket name (None for a unix socket)."""
    if isinstance(info, tuple) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return None


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
