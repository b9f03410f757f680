"""uvicorn's websockets-sansio protocol, with two changes for env sessions.

**Read ahead while the app keeps up.** uvicorn stops reading a connection after every message
and starts again once the app has received it: a ``pause_reading`` / ``resume_reading`` pair
per message, two ``epoll_ctl`` system calls on uvloop, ~3 µs of a server's ~25 µs per step at
256 sessions. A session has one request in flight, so the pair buys nothing until a client runs
ahead of its env. Here reading stays on while fewer than :data:`MAX_UNREAD` messages wait for
the app, and pauses (as uvicorn does) beyond that: a flooding client is still held back.

**Fail a connection without resetting it.** When a client breaks the protocol (a frame over
the size limit, say), uvicorn sends the close frame and closes the socket at once. If the
client is still sending (the rest of that frame), the kernel answers with a reset, and the
client may lose the close frame, seeing 1006 instead of 1009. Here the server does what
websockets' own protocol asks for: it half-closes, discards what still arrives until the
client closes its side, and closes the socket then (or after the close timeout).
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["MAX_UNREAD", "EnvWebSocketProtocol"]

MAX_UNREAD = 8  # messages queued for the app before the connection stops reading


class EnvWebSocketProtocol(WebSocketsSansIOProtocol):
    """Pass as uvicorn's ``ws``; all else is uvicorn's."""

    def send_receive_event_to_app(self) -> None:
        if self.read_paused or self.queue.qsize() >= MAX_UNREAD - 1:
            super().send_receive_event_to_app()  # queues the message and pauses reading
            return
        # uvicorn pauses only when reading is not paused yet: say it is, for this one call.
        self.read_paused = True
        try:
            super().send_receive_event_to_app()
        finally:
            self.read_paused = False

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
