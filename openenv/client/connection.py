"""One client WebSocket connection: websockets' Sans-I/O protocol on an asyncio ``Protocol``.

A session sends a request and awaits its reply, over and over. websockets' own asyncio client
serves every pattern (concurrent readers and writers, streaming, keepalive), and pays for it on
each message: an assembler with its queue and futures, a send lock, a write-buffer drain. At
hundreds of sessions that machinery is a quarter of the client's CPU per step. Here the
protocol (framing, masking, the handshake, pings, the closing handshake: all websockets') runs
straight on the transport, and a reply goes from ``data_received`` into the one future its call
awaits.

Writes are not flow-controlled: a session has one request in flight, so the transport's buffer
holds at most that request and the protocol's own small answers (pongs, close frames). There
are no keepalive pings from this side: every call has its own deadline, and servers ping their
clients to reap half-open connections.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from typing import Any, cast

from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidState
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from openenv.client.frames import Reassembly
from openenv.endpoint import Endpoint

__all__ = ["Connection"]

_MAX_QUEUED = 16  # unread messages before the transport stops reading
_BINARY = Opcode.BINARY


class Connection(Reassembly, asyncio.Protocol):
    """An open WebSocket to an env server; made by :meth:`open`.

    ``recv`` raises websockets' ``ConnectionClosed`` (with the close frames exchanged, if any)
    once the connection is gone, and so does ``send``.
    """

    def __init__(self, protocol: ClientProtocol) -> None:
        self.protocol = protocol
        self.transport: asyncio.Transport | None = None
        self._loop = loop = asyncio.get_running_loop()
        self._handshake_done: asyncio.Future[None] = loop.create_future()
        self._lost: asyncio.Future[None] = loop.create_future()
        self._messages: collections.deque[bytes | str] = collections.deque()
        self._waiter: asyncio.Future[bytes | str] | None = None
        self._fragments: list[bytes] = []
        self._fragmented_text = False
        self._reading_paused = False
        self._send_frame = protocol.send_binary

    @classmethod
    async def open(
        cls,
        endpoint: Endpoint,
        *,
        headers: dict[str, str],
        max_size: int | None,
        open_timeout: float,
        subprotocols: list[str] | None = None,
    ) -> Connection:
        """Connect to ``endpoint`` and complete the opening handshake within ``open_timeout``.

        Raises:
            OSError: the connection could not be made.
            TimeoutError: no handshake within ``open_timeout``.
            websockets.exceptions.InvalidHandshake: the server refused or botched the
                handshake (``InvalidStatus`` carries its HTTP response).
        """
        uri = parse_uri(endpoint.url)
        protocol = ClientProtocol(
            uri,
            subprotocols=cast(Any, subprotocols),  # websockets' Subprotocol is a NewType of str
            max_size=max_size,
        )
        request = protocol.connect()
        request.headers.update(headers)
        loop = asyncio.get_running_loop()
        connection: Connection | None = None
        try:
            async with asyncio.timeout(open_timeout):
                if endpoint.unix_socket is not None:
                    _, connection = await loop.create_unix_connection(
                        lambda: cls(protocol), endpoint.unix_socket
                    )
                else:
                    tls = ssl.create_default_context() if uri.secure else None
                    _, connection = await loop.create_connection(
                        lambda: cls(protocol),
                        uri.host,
                        uri.port,
                        ssl=tls,
                        server_hostname=uri.host if tls else None,
                    )
                protocol.send_request(request)
                connection._flush()
                await connection._handshake_done
        except BaseException:
            if connection is not None:
                connection._handshake_done.cancel()  # nobody will read its outcome now
                connection.abort()
            raise
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
        return self.protocol.state is State.OPEN

    def send(self, message: bytes) -> None:
        """Queue ``message`` as one binary frame, or a text frame after
        :meth:`use_text_frames` (written as the transport can). On a closed connection with
        messages still unread it does nothing: ``recv`` returns those, then raises."""
        try:
            self._send_frame(message)  # raises InvalidState unless the connection is open
        except InvalidState:
            if self._messages:
                # Unread messages may explain why (an error the server sent before closing,
                # as a full server does): recv hands them out first, then raises.
                return
            raise self._closed_error() from None
        self._flush()

    async def recv(self) -> bytes | str:
        """The next message: bytes from a binary frame, str from a text frame."""
        return await self.next_message()

    def request(self, message: bytes) -> asyncio.Future[bytes | str]:
        """:meth:`send` ``message``; the future of the next message received.

        ``send`` then ``recv`` in one call, with no coroutine in between: a session's hot path,
        written out (with the state read in ``data_received``, 6% of a step's client CPU).
        """
        try:
            self._send_frame(message)
        except InvalidState:
            self.send(message)  # closed: raises, unless unread messages explain why
        else:
            # Only the frame just sent: an end of stream is queued once the connection is
            # closed, and then the send above raises.
            write = self.transport.write  # type: ignore[union-attr]
            for data in self.protocol.data_to_send():
                write(data)
        if self._messages:
            return self.next_message()
        # The connection is open (the frame went out), so not lost: a reply is still to come.
        self._waiter = waiter = self._loop.create_future()
        return waiter

    def next_message(self) -> asyncio.Future[bytes | str]:
        """The future of the next message (done already if one is queued)."""
        waiter: asyncio.Future[bytes | str] = self._loop.create_future()
        if self._messages:
            waiter.set_result(self._messages.popleft())
            if self._reading_paused and len(self._messages) < _MAX_QUEUED // 2:
                self._reading_paused = False
                assert self.transport is not None
                self.transport.resume_reading()
        elif self._lost.done():
            waiter.set_exception(self._closed_error())
        else:
            self._waiter = waiter
        return waiter

    def interrupt(self) -> bool:
        """Cancel the future of the next message if a call awaits it (a call past its time
        limit); whether one did. A message arriving later is queued for the next call."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            return False
        self._waiter = None
        waiter.cancel()
        return True

    async def close(self, close_timeout: float) -> None:
        """The closing handshake, then the connection closed; aborted after ``close_timeout``."""
        if self.protocol.state is State.OPEN:
            self.protocol.send_close(CloseCode.NORMAL_CLOSURE)
            self._flush()
        try:
            async with asyncio.timeout(close_timeout):
                await asyncio.shield(self._lost)
        except TimeoutError:
            self.abort()

    def abort(self) -> None:
        """Drop the connection now, without a closing handshake (nothing if it is gone)."""
        # Aborting a transport that is already lost is not a no-op in asyncio: with writes
        # still buffered it reaches the loop it has let go of, and raises AttributeError.
        if self.transport is not None and not self._lost.done():
            self.transport.abort()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        protocol.receive_data(data)
        events = protocol.events_received()
        replies_only = bool(events)  # whole binary messages, nothing else: no state change
        for event in events:
            if event.__class__ is Frame and event.opcode is _BINARY and event.fin:
                # The hot path: a reply, to the call waiting for it.
                waiter = self._waiter
                if waiter is not None and not waiter.done():
                    self._waiter = None
                    waiter.set_result(event.data)  # type: ignore[arg-type]
                else:
                    self._deliver(event.data, False)  # type: ignore[arg-type]
                continue
            replies_only = False
            if event.__class__ is Frame:
                self._frame(event)
            elif isinstance(event, Response):
                self._handshake_ended(response=True)
        writes = protocol.data_to_send()  # pongs, close frames: rarely anything
        if writes or not replies_only:
            # The connection may have changed state: a frame that is not a reply (a close
            # frame, the handshake's response) came, or the connection failed (a frame too
            # large, a protocol violation: a close frame to send), or a partial frame came.
            self._write(writes)
            if protocol.state is not State.OPEN and not self._handshake_pending:
                # We answered a close frame, or failed the connection: the TCP connection is
                # done with.
                assert self.transport is not None
                self.transport.close()

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._handshake_ended()
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.receive_eof()  # idempotent; the state is now CLOSED
        self._handshake_ended()
        if not self._lost.done():
            self._lost.set_result(None)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(self._closed_error())

    # Internals.

    @property
    def _handshake_pending(self) -> bool:
        return not self._handshake_done.done()

    def _handshake_ended(self, response: bool = False) -> None:
        """The response arrived, or the connection ended before one did."""
        if self._handshake_done.done():
            return
        error = self.protocol.handshake_exc
        if error is not None:
            self._handshake_done.set_exception(error)
        elif response:  # frames behind it may have closed the connection already: recv says so
            self._handshake_done.set_result(None)
        else:
            self._handshake_done.set_exception(self._closed_error())

    def _deliver(self, data: bytes, text: bool) -> None:
        message: bytes | str = data
        if text:
            try:
                message = data.decode()
            except UnicodeDecodeError:
                self.protocol.fail(CloseCode.INVALID_DATA, "invalid UTF-8 in a text frame")
                return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self._waiter = None
            waiter.set_result(message)
            return
        self._messages.append(message)
        if len(self._messages) >= _MAX_QUEUED and not self._reading_paused:
            self._reading_paused = True
            assert self.transport is not None
            self.transport.pause_reading()

    def _flush(self) -> None:
        self._write(self.protocol.data_to_send())

    def _write(self, writes: list[bytes]) -> None:
        transport = self.transport
        assert transport is not None
        for data in writes:
            if transport.is_closing():
                return  # the peer ended the stream first: the handshake or recv reports it
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                transport.write_eof()

    def _closed_error(self) -> ConnectionClosed:
        protocol = self.protocol
        if protocol.state is State.CLOSED:
            return protocol.close_exc
        # Closing: the close frames are known, the TCP connection is not gone yet.
        return ConnectionClosedError(
            protocol.close_rcvd, protocol.close_sent, protocol.close_rcvd_then_sent
        )
