"""uvicorn's WebSocket protocol, reading ahead while the app is keeping up.

uvicorn's websockets-sansio protocol stops reading a connection after every message and starts
again once the app has received it: a ``pause_reading`` / ``resume_reading`` pair per message,
two ``epoll_ctl`` system calls on uvloop, ~3 µs of a server's ~25 µs per step at 256 sessions.
A session has one request in flight, so the pair buys nothing until a client runs ahead of
its env. This subclass leaves reading on while fewer than :data:`MAX_UNREAD` messages wait for
the app, and pauses (as uvicorn does) beyond that: a flooding client is still held back.
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

__all__ = ["MAX_UNREAD", "ReadAheadWebSocketProtocol"]

MAX_UNREAD = 8  # messages queued for the app before the connection stops reading


class ReadAheadWebSocketProtocol(WebSocketsSansIOProtocol):
    """Pass as uvicorn's ``ws``; everything but the read pausing is uvicorn's."""

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
