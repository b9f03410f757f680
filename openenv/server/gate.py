"""Limits before auth: what a connection may cost before anyone knows who sent it.

:class:`Gate` wraps uvicorn's HTTP protocol (handed to uvicorn as its ``http`` implementation,
the same public seam as our ``ws``) and looks at the bytes before its parser does:

- **A time limit on request heads.** A new connection must send its request line and headers
  within ``handshake_timeout`` (so must each later request on a kept-alive connection, from its
  first byte); a silent or slow one is closed.
- **Room for real clients.** At ``max_connections`` (below the file-descriptor limit, so the
  server never runs out and stops accepting) a new connection closes the oldest connection
  still waiting for its request head, or is answered 503 when none is waiting. Silent
  connections are thus the first to go, and a burst of real clients (a pool opening hundreds
  of sessions at once) is never cut short below the limit.
- **Capped heads.** A request line or header line over 8 KiB, or a head over
  ``max_header_bytes``, is answered 431, WebSocket upgrades included, before the parser
  ever sees it (httptools' time grows with the square of a huge header).
- **Capped bodies.** A body over ``max_frame_bytes`` (declared by ``Content-Length``, or counted
  in chunks) is answered 413.

A refusal is written, the connection half-closed and what the client still sends discarded
until it closes its side (or :data:`DRAIN_TIMEOUT`): closing at once would reset the connection
under a client still sending, and it would lose the answer.

Once a request upgrades to a WebSocket, uvicorn gives the transport to our WebSocket protocol
and this wrapper is out of the way.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

from openenv.server.config import ServerConfig

__all__ = ["DRAIN_TIMEOUT", "MAX_LINE_BYTES", "Gate", "raise_fd_limit"]

MAX_LINE_BYTES = 8192  # of a request line or one header line (websockets refuses longer ones)
DRAIN_TIMEOUT = 5.0  # seconds a refused client gets to read the answer and close its side
_FD_HEADROOM = 64  # descriptors kept for everything but connections (files, pipes, threads)
_MAX_CHUNK_LINE = 1024

log = logging.getLogger("openenv.server")

_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _PASS, _DRAIN = range(8)

_PHRASES = {
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    400: "Bad Request",
    503: "Service Unavailable",
}


def raise_fd_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit; return the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


class Gate:
    """The limits of one server's connections; :meth:`protocol` is uvicorn's ``http``.

    Args:
        config: the server's limits.
        inner: uvicorn's HTTP protocol class (default: the one uvicorn picks itself).
    """

    def __init__(self, config: ServerConfig, inner: Any = None) -> None:
        if inner is None:
            from uvicorn.protocols.http.auto import AutoHTTPProtocol

            inner = AutoHTTPProtocol
        self.inner = inner
        self.handshake_timeout = config.handshake_timeout
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        fd_room = max(16, soft - _FD_HEADROOM) if soft != resource.RLIM_INFINITY else 1 << 20
        self.max_connections = min(config.max_connections or fd_room, fd_room)
        self.max_header_bytes = config.max_header_bytes
        self.max_body_bytes = config.max_frame_bytes
        self.pending: dict[GatedConnection, None] = {}  # oldest first
        self.open = 0

    def protocol(self, **uvicorn_arguments: Any) -> GatedConnection:
        """A new connection's protocol (uvicorn calls this as its ``http`` class)."""
        return GatedConnection(self, uvicorn_arguments)

    def _wait_for_head(self, connection: GatedConnection) -> None:
        self.pending[connection] = None

    def _got_head(self, connection: GatedConnection) -> None:
        self.pending.pop(connection, None)


class GatedConnection(asyncio.Protocol):
    """One connection: checks heads and bodies, and hands the bytes to uvicorn's protocol."""

    def __init__(self, gate: Gate, uvicorn_arguments: dict[str, Any]) -> None:
        self._gate = gate
        self._inner: asyncio.Protocol = gate.inner(**uvicorn_arguments)
        self._transport: asyncio.Transport | None = None
        self._state = _HEAD
        self._head = bytearray()
        self._remaining = 0  # of a body, or of a chunk
        self._body = 0  # bytes of the current chunked body so far
        self._timer: asyncio.TimerHandle | None = None
        self._served = False  # the inner protocol has the connection

    # asyncio.Protocol.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        gate = self._gate
        self._transport = transport  # type: ignore[assignment]
        gate.open += 1
        if gate.open > gate.max_connections:
            if gate.pending:
                next(iter(gate.pending)).evict("at the connection limit")
            else:
                self._state = _DRAIN
                log.debug("refused a connection: at the limit of %d", gate.max_connections)
                self._answer(503, "the server has too many connections; retry later\n")
                return
        self._served = True
        self._inner.connection_made(transport)
        self._head_starts()

    def data_received(self, data: bytes) -> None:
        state = self._state
        if state is _PASS:
            self._inner.data_received(data)
            return
        if state is _DRAIN:
            return
        refusal = self._scan(data)
        if refusal is not None:
            self._refuse(*refusal)
            return
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._state is _DRAIN or not self._served:
            return None  # close
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        gate = self._gate
        gate.open -= 1
        gate._got_head(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._served:
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._served:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._served:
            self._inner.resume_writing()

    # Request framing: just enough HTTP/1.1 to know where each head starts and ends.

    def _scan(self, data: bytes) -> tuple[int, str] | None:
        """Follow ``data`` through heads and bodies; a refusal (status, reason) if it breaks a
        limit."""
        view = memoryview(data)
        while view:
            state = self._state
            if state is _HEAD:
                view, refusal = self._scan_head(view)
                if refusal is not None:
                    return refusal
            elif state is _BODY or state is _CHUNK_DATA:
                taken = min(len(view), self._remaining)
                self._remaining -= taken
                view = view[taken:]
                if self._remaining == 0:
                    self._state = _CHUNK_END if state is _CHUNK_DATA else _HEAD
            elif state is _CHUNK_END:
                view, line = self._line(view)
                if line is None:
                    continue
                if line:
                    return 400, "malformed chunked body\n"
                self._state = _CHUNK_SIZE
            elif state is _CHUNK_SIZE or state is _TRAILER:
                view, line = self._line(view)
                if line is None:
                    if len(self._head) > _MAX_CHUNK_LINE:
                        return 400, "chunk line too long\n"
                    continue
                if state is _TRAILER:
                    self._body += len(line)
                    if self._body > self._gate.max_body_bytes:
                        return 413, self._too_large()
                    if not line:
                        self._state = _HEAD
                    continue
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    return 400, "malformed chunk size\n"
                self._body += size
                if self._body > self._gate.max_body_bytes:
                    return 413, self._too_large()
                if size == 0:
                    self._state = _TRAILER
                else:
                    self._state, self._remaining = _CHUNK_DATA, size
            else:  # _PASS or _DRAIN: nothing more to follow
                return None
        return None

    def _line(self, view: memoryview) -> tuple[memoryview, bytes | None]:
        """One CRLF-terminated line of a chunked body (None: not whole yet)."""
        end = bytes(view[: _MAX_CHUNK_LINE + 2]).find(b"\n")
        if end < 0:
            self._head += view
            return view[len(view) :], None
        line = bytes(self._head + view[: end + 1]).rstrip(b"\r\n")
        self._head.clear()
        return view[end + 1 :], line

    def _scan_head(self, view: memoryview) -> tuple[memoryview, tuple[int, str] | None]:
        gate, head = self._gate, self._head
        if not head:
            # Empty lines before a request are allowed (RFC 9112 2.2).
            while view and view[0] in (0x0D, 0x0A):
                view = view[1:]
            if not view:
                return view, None
            if self._timer is None:  # a later request on a kept-alive connection begins
                self._head_starts()
        before = len(head)
        head += view[: gate.max_header_bytes + 4 - before]
        end = head.find(b"\r\n\r\n", max(0, before - 3))
        if end < 0:
            if len(head) > gate.max_header_bytes:
                return view, (431, "request headers too large\n")
            if len(head) - (head.rfind(b"\n") + 1) > MAX_LINE_BYTES:
                return view, (431, "request line or header line too long\n")
            return view[len(view) :], None
        rest = view[end + 4 - before :]
        refusal = self._head_done(bytes(head[: end + 2]))
        head.clear()
        return rest, refusal

    def _head_done(self, head: bytes) -> tuple[int, str] | None:
        """A whole head: check its lines and find out how its body is framed."""
        self._gate._got_head(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        lines = head.split(b"\r\n")
        if any(len(line) > MAX_LINE_BYTES for line in lines):
            return 431, "request line or header line too long\n"
        length = 0
        chunked = upgrade = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    return 400, "malformed Content-Length\n"
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"upgrade":
                upgrade = True
        if upgrade:
            self._state = _PASS  # uvicorn hands a WebSocket to our protocol; else it answers
        elif chunked:
            self._state, self._body = _CHUNK_SIZE, 0
        elif length > self._gate.max_body_bytes:
            return 413, self._too_large()
        elif length > 0:
            self._state, self._remaining = _BODY, length
        else:
            self._state = _HEAD
        return None

    def _too_large(self) -> str:
        return f"request body over the server's limit of {self._gate.max_body_bytes} bytes\n"

    # Timing and eviction.

    def _head_starts(self) -> None:
        """A head begins (or, on a new connection, must begin): under the time limit."""
        if self._timer is None and self._gate.handshake_timeout:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._gate.handshake_timeout, self._too_slow)
        self._gate._wait_for_head(self)

    def _too_slow(self) -> None:
        self._timer = None
        self.evict("no request within the handshake time limit")

    def evict(self, why: str) -> None:
        """Close a connection still waiting for its request head."""
        self._gate._got_head(self)
        log.debug("closed a connection: %s", why)
        if self._transport is not None:
            self._transport.abort()

    # Refusals.

    def _refuse(self, status: int, reason: str) -> None:
        log.debug("refused a request: %d %s", status, reason.strip())
        self._gate._got_head(self)
        self._state = _DRAIN
        self._answer(status, reason)

    def _answer(self, status: int, body: str) -> None:
        """Write the answer, half-close, and drain the client until it closes."""
        transport = self._transport
        assert transport is not None
        if self._timer is not None:
            self._timer.cancel()
        content = body.encode()
        transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, _PHRASES[status].encode(), len(content), content)
        )
        if transport.can_write_eof():
            transport.write_eof()
        self._timer = asyncio.get_running_loop().call_later(DRAIN_TIMEOUT, transport.close)
