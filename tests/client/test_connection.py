"""Connection: websockets' Sans-I/O client on an asyncio Protocol, against real servers."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve, unix_serve
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus
from websockets.http11 import Response

from openenv.client.connection import Connection
from openenv.endpoint import Endpoint

Handler = Callable[[ServerConnection], Awaitable[None]]


@contextlib.asynccontextmanager
async def ws_server(handler: Handler, **options: Any) -> AsyncIterator[Endpoint]:
    """A websockets server on 127.0.0.1 port 0 running ``handler`` per connection."""
    async with serve(handler, "127.0.0.1", 0, compression=None, **options) as server:
        port = server.sockets[0].getsockname()[1]
        yield Endpoint(f"ws://127.0.0.1:{port}/ws")


async def connect(endpoint: Endpoint, max_size: int | None = 1 << 20) -> Connection:
    return await Connection.open(
        endpoint, headers={"User-Agent": "test"}, max_size=max_size, open_timeout=5
    )


async def test_request_reply_over_tcp_and_unix_sockets() -> None:
    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with ws_server(echo) as endpoint:
        connection = await connect(endpoint)
        for size in (0, 1, 125, 126, 65535, 65536, 300_000):  # every length encoding
            connection.send(b"x" * size)
            assert await connection.recv() == b"x" * size
        await connection.close(close_timeout=2)
        assert not connection.is_open

    with tempfile.TemporaryDirectory() as directory:
        path = f"{directory}/ws.sock"
        async with unix_serve(echo, path):
            connection = await connect(Endpoint("ws://localhost/ws", path))
            connection.send(b"over unix")
            assert await connection.recv() == b"over unix"
            await connection.close(close_timeout=2)


async def test_fragmented_messages_are_reassembled_and_text_is_str() -> None:
    async def fragments(ws: ServerConnection) -> None:
        await ws.send([b"ab", b"cd", b"ef"])
        await ws.send(["hé", "llo"])
        await ws.wait_closed()

    async with ws_server(fragments) as endpoint:
        connection = await connect(endpoint)
        assert await connection.recv() == b"abcdef"
        assert await connection.recv() == "héllo"
        await connection.close(close_timeout=2)


async def test_server_pings_are_answered_without_any_recv() -> None:
    answered = asyncio.Event()

    async def pinger(ws: ServerConnection) -> None:
        latency = await ws.ping()
        await asyncio.wait_for(latency, 5)
        answered.set()
        await ws.wait_closed()

    async with ws_server(pinger) as endpoint:
        connection = await connect(endpoint)
        await asyncio.wait_for(answered.wait(), 5)
        await connection.close(close_timeout=2)


async def test_server_close_code_reaches_recv_and_send() -> None:
    async def closer(ws: ServerConnection) -> None:
        await ws.close(4000, "bye for now")

    async with ws_server(closer) as endpoint:
        connection = await connect(endpoint)
        with pytest.raises(ConnectionClosed) as caught:
            await connection.recv()
        assert caught.value.rcvd is not None
        assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (4000, "bye for now")
        with pytest.raises(ConnectionClosed):
            connection.send(b"too late")
        assert not connection.is_open


async def test_a_peer_that_vanishes_fails_the_waiting_recv() -> None:
    async def vanisher(ws: ServerConnection) -> None:
        await ws.recv()
        ws.transport.abort()

    async with ws_server(vanisher) as endpoint:
        connection = await connect(endpoint)
        connection.send(b"anyone?")
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.wait_for(connection.recv(), 5)
        assert caught.value.rcvd is None  # no close frame: the peer is gone


async def test_a_message_over_max_size_fails_the_connection_with_1009() -> None:
    seen: list[int | None] = []

    async def big(ws: ServerConnection) -> None:
        await ws.send(b"y" * 2000)
        await ws.wait_closed()
        seen.append(ws.close_code)

    async with ws_server(big) as endpoint:
        connection = await connect(endpoint, max_size=1000)
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.wait_for(connection.recv(), 5)
        assert caught.value.sent is not None and caught.value.sent.code == 1009
    assert seen == [1009]


async def test_invalid_utf8_in_a_text_frame_fails_the_connection_with_1007() -> None:
    async def bad_text(ws: ServerConnection) -> None:
        await ws.send(b"\xff\xfe", text=True)
        await ws.wait_closed()

    async with ws_server(bad_text) as endpoint:
        connection = await connect(endpoint)
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.wait_for(connection.recv(), 5)
        assert caught.value.sent is not None and caught.value.sent.code == 1007


async def test_a_flood_pauses_reading_and_loses_nothing() -> None:
    async def flood(ws: ServerConnection) -> None:
        for index in range(500):
            await ws.send(index.to_bytes(2, "big"))
        await ws.wait_closed()

    async with ws_server(flood) as endpoint:
        connection = await connect(endpoint)
        for _ in range(500):  # let the flood pile up unread, up to the queue's limit (<= 5 s)
            if connection._reading_paused:
                break
            await asyncio.sleep(0.01)
        assert connection._reading_paused
        received = [
            int.from_bytes(await asyncio.wait_for(connection.recv(), 5), "big") for _ in range(500)
        ]
        assert received == list(range(500))
        await connection.close(close_timeout=2)


async def test_refused_handshake_is_invalid_status() -> None:
    def refuse(connection: ServerConnection, request: Any) -> Response:
        return connection.respond(403, "no\n")

    async def never(ws: ServerConnection) -> None:  # pragma: no cover - never reached
        pass

    async with ws_server(never, process_request=refuse) as endpoint:
        with pytest.raises(InvalidStatus) as caught:
            await connect(endpoint)
        assert caught.value.response.status_code == 403


@contextlib.asynccontextmanager
async def tcp_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[Endpoint]:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        yield Endpoint(f"ws://127.0.0.1:{port}/ws")


async def test_a_server_that_never_answers_the_handshake_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    async with tcp_server(silent) as endpoint:
        with pytest.raises(TimeoutError):
            await Connection.open(endpoint, headers={}, max_size=None, open_timeout=0.3)


async def test_garbage_instead_of_a_handshake_is_invalid_message() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await writer.drain()
        writer.close()

    async with tcp_server(garbage) as endpoint:
        with pytest.raises(InvalidMessage):
            await connect(endpoint)


async def test_close_aborts_a_peer_that_never_completes_the_closing_handshake() -> None:
    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from websockets.server import ServerProtocol

        protocol = ServerProtocol()
        protocol.receive_data(await reader.readuntil(b"\r\n\r\n"))
        (request,) = protocol.events_received()
        protocol.send_response(protocol.accept(request))
        writer.writelines(protocol.data_to_send())
        await reader.read()  # ignores the close frame; reads until the client aborts
        writer.close()

    async with tcp_server(deaf) as endpoint:
        connection = await connect(endpoint)
        started = asyncio.get_running_loop().time()
        await connection.close(close_timeout=0.3)
        assert 0.25 < asyncio.get_running_loop().time() - started < 2
        assert not connection.is_open


async def test_closing_after_the_server_failed_a_large_send_raises_nothing() -> None:
    # The server half-closes on the oversized frame while most of it still sits in our write
    # buffer; the transport is gone by the time the session closes, and closing must not try
    # to tear it down again.
    async def small(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with ws_server(small, max_size=1000) as endpoint:
        for size in (1 << 20, 4 << 20):
            connection = await connect(endpoint)
            connection.send(b"z" * size)
            with pytest.raises(ConnectionClosed) as caught:
                await asyncio.wait_for(connection.recv(), 5)
            assert caught.value.rcvd is not None and caught.value.rcvd.code == 1009
            connection.abort()
            await connection.close(close_timeout=1)
