"""uvicorn's websockets-sansio protocol, with a direct path for env sessions.

**Sessions run on the transport.** uvicorn hands every message to the app as an ASGI dict
through a queue, and takes every reply back as another dict through a coroutine: per step a
queue hand-off, a task wake-up and two dicts, most of what a server spends beyond the protocol
itself. Here the handshake, auth, capacity refusal and everything else stay ASGI (Starlette's
app, routes and lifespan are untouched), but once the app accepts a session it hands the
connection a :class:`~openenv.server.dialect.Dialect` through the ``openenv.direct`` ASGI
extension (:meth:`EnvWebSocketProtocol.serve_session`). From then on each frame goes from
``data_received`` through websockets' Sans-I/O parser into ``dialect.handle`` and its reply
straight back to the transport, as websockets' own Sans-I/O examples do.

**One request at a time, and backpressure.** A reply that must wait (an async or blocking env)
is awaited in a task; frames arriving meanwhile wait in order, and past :data:`MAX_UNREAD` of
them reading pauses until the session catches up. While the transport's write buffer is full
(a client that sends but does not read) requests wait too, so a flood is held back.

**Fail a connection without resetting it.** When a client breaks the protocol (a frame over
the size limit, say), uvicorn sends the close frame and closes the socket at once. If the
client is still sending (the rest of that frame), the kernel answers with a reset, and the
client may lose the close frame, seeing 1006 instead of 1009. Here the server does what
websockets' own protocol asks for: it half-closes, discards what still arrives until the
client closes its side, and closes the socket then (or after the close timeout).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable
from typing import Any, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import CloseCode as WebSocketCloseCode
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response

from openenv.protocol import CloseCode
from openenv.server.dialect import Closing, Dialect, Outgoing, Reply, is_ready

__all__ = ["DIRECT_EXTENSION", "MAX_UNREAD", "EnvWebSocketProtocol"]

MAX_UNREAD = 8  # messages waiting for the session before the connection stops reading
DIRECT_EXTENSION = "openenv.direct"  # ASGI scope extension: {"serve": serve_session}

log = logging.getLogger("openenv.server")
_BINARY = Opcode.BINARY


class EnvWebSocketProtocol(WebSocketsSansIOProtocol):
    """Pass as uvicorn's ``ws``; all else is uvicorn's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._dialect: Dialect | None = None
        self._waiting: collections.deque[bytes | str] = collections.deque()
        self._in_flight: asyncio.Task[None] | None = None
        self._over: asyncio.Future[None] | None = None
        self._write_paused = False  # the transport's buffer is full: requests wait

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        if self.handshake_initiated and not self.handshake_complete:  # an app will run
            self.scope["extensions"][DIRECT_EXTENSION] = {"serve": self.serve_session}

    async def serve_session(self, dialect: Dialect) -> None:
        """Serve an accepted session on this connection with ``dialect`` until it ends."""
        self._dialect = dialect
        self._over = self.loop.create_future()
        while not self.queue.empty():  # whatever arrived before the session took over
            message = self.queue.get_nowait()
            if message["type"] == "websocket.receive":
                self._waiting.append(message.get("bytes") or message.get("text") or "")
        if self.disconnected or self.close_sent:
            return
        greeting = dialect.greeting()
        if greeting is not None:
            self._send(greeting)
        self._catch_up()
        await self._over
        if self._in_flight is not None:  # the session's env is released only after its call
            await asyncio.wait([self._in_flight])

    # Incoming messages.

    def data_received(self, data: bytes) -> None:
        if self._dialect is None:
            super().data_received(data)
            return
        conn = self.conn
        conn.receive_data(data)
        if conn.parser_exc is not None:
            self.handle_parser_exception()
            return
        handle = self._dialect.handle
        for event in conn.events_received():
            # The hot path: a whole binary message while nothing waits before it, answered
            # here; everything else takes uvicorn's way (handle_bytes, handle_ping, ...).
            if (
                event.__class__ is Frame
                and event.opcode is _BINARY
                and event.fin
                and self._in_flight is None
                and not self._waiting
                and not self._write_paused
                and not self.close_sent
            ):
                try:
                    reply = handle(event.data)  # type: ignore[arg-type]
                except Exception:
                    log.exception("session failed on a request")
                    reply = Closing(CloseCode.INTERNAL_ERROR, "internal error")
                if reply.__class__ is bytes:
                    conn.send_binary(reply)
                else:
                    self._dispatch(reply)
            else:
                self._event(event)
        write = self.transport.write
        for chunk in conn.data_to_send():
            write(chunk)

    def _event(self, event: Request | Response | Frame) -> None:
        """uvicorn's handling of one event (its handle_events, for one)."""
        if not isinstance(event, Frame):
            return  # a second handshake request: websockets' parser never makes one
        opcode = event.opcode
        if opcode is Opcode.BINARY:
            self.handle_bytes(event)
        elif opcode is Opcode.TEXT:
            self.handle_text(event)
        elif opcode is Opcode.CONT:
            self.handle_cont(event)
        elif opcode is Opcode.PING:
            self.handle_ping()
        elif opcode is Opcode.PONG:
            self.handle_pong(event)
        else:
            self.handle_close(event)

    def send_receive_event_to_app(self) -> None:
        if self._dialect is None:
            self._queue_for_app()
            return
        frames = self.frames
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        self.frames = []
        if self.close_sent:
            return  # closing: discard until the peer's close frame arrives
        message: bytes | str = data
        if self.curr_msg_data_type == "text":
            try:
                message = data.decode()
            except UnicodeDecodeError:
                self.conn.fail(WebSocketCloseCode.INVALID_DATA, "invalid UTF-8 in a text frame")
                self.handle_parser_exception()
                return
        if self._in_flight is not None or self._waiting or self._write_paused:
            self._wait(message)
        else:
            self._handle(message)

    def _queue_for_app(self) -> None:
        """uvicorn's ASGI hand-off, reading ahead while the app keeps up: uvicorn pauses
        after every message, an ``epoll_ctl`` pair per message that buys nothing until a
        client runs ahead of its app."""
        if self.read_paused or self.queue.qsize() >= MAX_UNREAD - 1:
            super().send_receive_event_to_app()  # queues the message and pauses reading
            return
        # uvicorn pauses only when reading is not paused yet: say it is, for this one call.
        self.read_paused = True
        try:
            super().send_receive_event_to_app()
        finally:
            self.read_paused = False

    def _wait(self, message: bytes | str) -> None:
        self._waiting.append(message)
        if len(self._waiting) >= MAX_UNREAD and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _handle(self, message: bytes | str) -> None:
        assert self._dialect is not None
        try:
            reply: Reply = self._dialect.handle(message)
        except Exception:
            log.exception("session failed on a request")
            reply = Closing(CloseCode.INTERNAL_ERROR, "internal error")
        self._dispatch(reply)

    def _dispatch(self, reply: Reply) -> None:
        if is_ready(reply):
            self._answer(reply)
        else:
            self._in_flight = self.loop.create_task(
                self._answer_later(cast(Awaitable[Outgoing], reply))
            )

    async def _answer_later(self, reply: Awaitable[Outgoing]) -> None:
        try:
            outgoing = await reply
        except Exception:
            log.exception("session failed on a request")
            outgoing = Closing(CloseCode.INTERNAL_ERROR, "internal error")
        self._in_flight = None
        if self.close_sent or self.disconnected:
            return
        self._answer(outgoing)
        self._catch_up()

    def _catch_up(self) -> None:
        """Handle waiting messages while each is answered at once; read again once few wait."""
        waiting = self._waiting
        while waiting and self._in_flight is None and not self._write_paused:
            if self.close_sent or self.disconnected:
                waiting.clear()
                return
            self._handle(waiting.popleft())
        if self.read_paused and len(waiting) < MAX_UNREAD // 2 and not self.disconnected:
            self.read_paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._write_paused = True

    def resume_writing(self) -> None:
        super().resume_writing()
        self._write_paused = False
        if self._dialect is not None:
            self._catch_up()

    # Outgoing messages.

    def _answer(self, outgoing: Outgoing) -> None:
        if outgoing.__class__ is Closing:
            self._close(outgoing)
        else:
            self._send(outgoing)  # type: ignore[arg-type]

    def _send(self, frame: bytes | str) -> None:
        if self.close_sent or self.disconnected:
            return
        conn = self.conn
        if frame.__class__ is bytes:
            conn.send_binary(frame)
        else:
            conn.send_text(frame.encode())  # type: ignore[union-attr]
        write = self.transport.write
        for data in conn.data_to_send():
            write(data)

    def _close(self, closing: Closing) -> None:
        """Send the last frame and a close frame; wait for the client's (as uvicorn does)."""
        if closing.frame is not None:
            self._send(closing.frame)
        if not (self.close_sent or self.disconnected or self.transport.is_closing()):
            self.conn.send_close(closing.code, closing.reason)
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            if self.read_paused:
                self.read_paused = False
                self.transport.resume_reading()  # for the client's close frame
            self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)
        self._session_over()

    def _session_over(self) -> None:
        self._waiting.clear()
        if self._over is not None and not self._over.done():
            self._over.set_result(None)

    # Connection events.

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._session_over()

    def handle_parser_exception(self) -> None:
        if self.close_sent:
            return  # failed already: the parser discards whatever else arrives
        assert self.conn.close_sent is not None
        close = self.conn.close_sent
        self.queue.put_nowait(
            {"type": "websocket.disconnect", "code": close.code, "reason": close.reason}
        )
        self.close_sent = True
        for data in self.conn.data_to_send():  # the close frame, then b"": half-close
            if data:
                self.transport.write(data)
            elif self.transport.can_write_eof():
                self.transport.write_eof()
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()  # drain the client until it closes its side
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.close)
        self._session_over()
