"""One client WebSocket for blocking code: websockets' Sans-I/O protocol on a plain socket.

The sync twin of :class:`~openenv.client.connection.Connection`, as websockets' own ``sync``
layer sits beside its ``asyncio`` one: the same protocol object (the handshake, framing,
masking, pings, the closing handshake), fed by reads on a non-blocking socket instead of an
event loop's transport. A call is straight-line code: frame the request, write it, ``poll``
the socket until the reply is in, read it.

Nothing reads the socket between calls but the keepalive thread (``client.keepalive``), which
answers the server's pings and queues whatever else came for the next call. :attr:`lock` says
who reads: a call holds it from its request to its reply, the keepalive only takes it when it
is free.
"""

from __future__ import annotations

import collections
import select
import socket
import ssl
import threading
import time
from typing import Any, cast

from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidState
from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from openenv.client import keepalive
from openenv.client.frames import Reassembly
from openenv.endpoint import Endpoint

__all__ = ["SyncConnection"]

_READ_BYTES = 256 * 1024  # per read, as asyncio's transports read
# What reads go into, one per thread; what came is copied out. A fresh 256 KiB bytes object
# per read would be mapped and unmapped by malloc each time (three syscalls).
_read_buffers = threading.local()
_BINARY = Opcode.BINARY


class SyncConnection(Reassembly):
    """An open WebSocket to an env server, for blocking calls; made by :meth:`open`.

    ``request`` and ``recv`` raise websockets' ``ConnectionClosed`` once the connection is
    gone, ``TimeoutError`` when their deadline passes first, and ``OSError`` when the socket
    fails. A call that times out leaves the connection usable: its late reply is queued and the
    next call reads past it.
    """

    def __init__(self, sock: socket.socket, protocol: ClientProtocol, lock: threading.Lock) -> None:
        self.protocol = protocol
        self.lock = lock  # held by whoever reads the socket: a call or the keepalive
        self._sock = sock
        self.fd = sock.fileno()
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)
        self._messages: collections.deque[bytes | str] = collections.deque()
        self._fragments: list[bytes] = []
        self._fragmented_text = False
        self._send_frame = protocol.send_binary
        self._eof = False  # the server closed the TCP connection (or it failed)

    @classmethod
    def open(
        cls,
        endpoint: Endpoint,
        *,
        headers: dict[str, str],
        max_size: int | None,
        open_timeout: float,
        subprotocols: list[str] | None,
        lock: threading.Lock,
    ) -> SyncConnection:
        """Connect to ``endpoint`` and complete the opening handshake within ``open_timeout``;
        ``lock`` is the one the session's calls hold (see :attr:`lock`).

        Raises:
            OSError: the connection could not be made.
            TimeoutError: no handshake within ``open_timeout``.
            websockets.exceptions.InvalidHandshake: the server refused or botched the
                handshake (``InvalidStatus`` carries its HTTP response).
        """
        due = time.monotonic() + open_timeout
        uri = parse_uri(endpoint.url)
        protocol = ClientProtocol(
            uri,
            subprotocols=cast(Any, subprotocols),  # websockets' Subprotocol is a NewType of str
            max_size=max_size,
        )
        request = protocol.connect()
        request.headers.update(headers)
        sock = _connect(endpoint, uri.host, uri.port, uri.secure, open_timeout)
        try:
            sock.setblocking(False)
            connection = cls(sock, protocol, lock)
            protocol.send_request(request)
            connection._write(protocol.data_to_send(), due)
            while protocol.handshake_exc is None and protocol.state is State.CONNECTING:
                if connection._eof:
                    raise ConnectionClosedError(None, None)
                connection._read(due)
            if protocol.handshake_exc is not None:
                raise protocol.handshake_exc
        except BaseException:
            sock.close()
            raise
        keepalive.watch(connection)
        return connection

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server chose at the handshake, if any."""
        return self.protocol.subprotocol

    def use_text_frames(self) -> None:
        """Send every later message as a text frame (its bytes must be UTF-8)."""
        self._send_frame = self.protocol.send_text

    @property
    def is_open(self) -> bool:
        """Whether messages can still be sent and received."""
        return self.protocol.state is State.OPEN and not self._eof

    def request(self, message: bytes, due: float | None) -> bytes | str:
        """:meth:`send` ``message``, then return the next message received (its reply, or a
        late one to an earlier call), waiting until ``due``."""
        self.send(message, due)
        return self.recv(due)

    def send(self, message: bytes, due: float | None) -> None:
        """Send ``message`` as one binary frame (a text frame after :meth:`use_text_frames`),
        waiting until ``due`` (``time.monotonic()``; None: no limit) for the socket to take it.
        A message not all written by then leaves half a frame on the wire: the connection is
        dropped. On a closed connection with messages still unread it does nothing: ``recv``
        returns those (an error the server sent before closing), then raises."""
        try:
            self._send_frame(message)
        except InvalidState:
            if not self._messages:
                raise self._closed_error() from None
        else:
            self._write(self.protocol.data_to_send(), due)

    def recv(self, due: float | None) -> bytes | str:
        """The next message (bytes from a binary frame, str from a text frame), waiting until
        ``due`` (``time.monotonic()``; None: no limit)."""
        messages = self._messages
        while not messages:
            if self._eof or self.protocol.state is not State.OPEN:
                raise self._closed_error()
            self._read(due)
        return messages.popleft()

    def pump(self) -> bool:
        """Read what has arrived, without waiting, if no call is reading (the keepalive's
        round: pongs go out, messages are queued). False when a call reads, or the connection
        is done: nothing for the keepalive to do until its next round."""
        if not self.lock.acquire(blocking=False):
            return False
        try:
            if self._eof:
                return False
            data = self._recv()
            if data is not None:
                self._received(data)
            return not self._eof
        finally:
            self.lock.release()

    def close(self, close_timeout: float) -> None:
        """The closing handshake, then the socket closed; cut short after ``close_timeout``."""
        due = time.monotonic() + close_timeout
        try:
            if self.protocol.state is State.OPEN and not self._eof:
                self.protocol.send_close(CloseCode.NORMAL_CLOSURE)
                self._write(self.protocol.data_to_send(), due)
            while not self._eof and self.protocol.state is not State.CLOSED:
                self._read(due)
        except (OSError, TimeoutError, ConnectionClosed):
            pass  # gone or slow: nothing more to say to it
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop the connection now, without a closing handshake (idempotent)."""
        self._eof = True
        keepalive.forget(self)
        self._sock.close()

    # Internals.

    def _read(self, due: float | None) -> None:
        """Wait until data arrives (``TimeoutError`` at ``due``), read it and feed it to the
        protocol. A signal handler's exception (Ctrl-C) comes out of the wait."""
        # TLS may hold decrypted bytes already, which poll cannot see.
        if not (self._tls and cast(ssl.SSLSocket, self._sock).pending()):
            timeout = None if due is None else max(due - time.monotonic(), 0.0) * 1000
            if not self._poll.poll(timeout):
                raise TimeoutError
        data = self._recv()
        if data is not None:
            self._received(data)

    def _recv(self) -> bytes | None:
        """What the socket has (b"" at its end), or None if nothing after all."""
        buffer = getattr(_read_buffers, "buffer", None)
        if buffer is None:
            buffer = _read_buffers.buffer = memoryview(bytearray(_READ_BYTES))
        try:
            count = self._sock.recv_into(buffer)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
            return None
        except OSError:
            count = 0  # reset: as good as an end of stream (the close code says "abnormal")
        return bytes(buffer[:count])

    def _received(self, data: bytes) -> None:
        protocol = self.protocol
        if data:
            protocol.receive_data(data)
        else:
            protocol.receive_eof()
            self._eof = True
        for event in protocol.events_received():
            if event.__class__ is Frame and event.opcode is _BINARY and event.fin:
                self._messages.append(event.data)  # type: ignore[arg-type]  # the hot path
            elif event.__class__ is Frame:
                self._frame(event)
        writes = protocol.data_to_send()  # pongs, close frames: rarely anything
        if writes:
            try:
                self._write(writes, None)
            except OSError:
                self._eof = True
        if self._eof or protocol.state is State.CLOSED:
            self.abort()  # the end of the stream, or of the closing handshake: the socket's too

    def _deliver(self, data: bytes, text: bool) -> None:
        if not text:
            self._messages.append(data)
            return
        try:
            self._messages.append(data.decode())
        except UnicodeDecodeError:
            self.protocol.fail(CloseCode.INVALID_DATA, "invalid UTF-8 in a text frame")

    def _write(self, chunks: list[bytes], due: float | None) -> None:
        sock = self._sock
        for data in chunks:
            if not data:  # the protocol's end of stream
                if not self._tls:
                    sock.shutdown(socket.SHUT_WR)
                continue
            view = memoryview(data)
            while view:
                try:
                    view = view[sock.send(view) :]
                except (BlockingIOError, ssl.SSLWantWriteError):
                    self._wait_writable(due, partial=len(view) < len(data))

    def _wait_writable(self, due: float | None, partial: bool) -> None:
        timeout = None if due is None else max(due - time.monotonic(), 0.0) * 1000
        if not _poll_out(self.fd, timeout):
            if partial:
                self.abort()  # half a frame is out: nothing can follow it
            raise TimeoutError

    def _closed_error(self) -> ConnectionClosed:
        protocol = self.protocol
        if self._eof:
            protocol.receive_eof()  # idempotent; the state is now CLOSED
        if protocol.state is State.CLOSED:
            return protocol.close_exc
        # Closing: the close frames are known, the TCP connection is not gone yet.
        return ConnectionClosedError(
            protocol.close_rcvd, protocol.close_sent, protocol.close_rcvd_then_sent
        )


def _poll_out(fd: int, timeout: float | None) -> bool:
    poll = select.poll()
    poll.register(fd, select.POLLOUT)
    return bool(poll.poll(timeout))


def _connect(
    endpoint: Endpoint, host: str, port: int, secure: bool, timeout: float
) -> socket.socket:
    """A connected socket (TLS for ``wss://``), made within ``timeout``."""
    if endpoint.unix_socket is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(endpoint.unix_socket)
        except BaseException:
            sock.close()
            raise
        return sock
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio's transports do
    if secure:
        try:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
    return sock
