"""The references ``openenv bench --compare`` judges us by, each in server processes of its own.

Every reference runs as many server processes and connections as ours, over the same transport
(a unix socket when ours uses one, else TCP on 127.0.0.1), with frames of our exact sizes, on
uvloop at both ends:

- ``sansio`` (the ceiling): websockets' Sans-I/O protocol on raw asyncio ``Protocol``\\ s at both
  ends; a reply leaves the server from ``data_received`` and lands in the one future the
  client's call awaits. As little as pure-Python WebSocket code can do per message.
- ``websockets`` (the typical app): websockets' own asyncio client and server.
- ``http`` (the baseline): the same env behind a per-step ``POST`` (JSON), served by uvicorn
  with httptools on uvloop, driven by the faster of aiohttp (one pooled session) and httpx
  (one client per session, the way to use it for many concurrent sessions).

Each yields a :class:`Reference`: one awaitable step call per session, and the server pids
(their CPU time is measured too).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from websockets.client import ClientProtocol
from websockets.frames import Frame
from websockets.http11 import Response
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

__all__ = ["Call", "Reference", "http_reference", "sansio_reference", "websockets_reference"]

Call = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class Reference:
    """What a reference measures: one step call per session, and its servers' pids."""

    calls: list[Call]
    pids: list[int]
    label: str = ""  # which client, where a reference chose between several


@dataclass(frozen=True)
class _Servers:
    addresses: list[str]
    pids: list[int]


@contextlib.asynccontextmanager
async def _servers(commands: list[list[str]]) -> AsyncIterator[_Servers]:
    """Start one server per command; each prints its address on its first line."""
    processes = [
        subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
            [sys.executable, "-m", *command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    try:
        addresses = []
        for process in processes:
            assert process.stdout is not None
            line = await asyncio.to_thread(process.stdout.readline)
            if not line:
                raise RuntimeError(f"reference server {process.args!r} failed to start")
            addresses.append(line.strip())
        yield _Servers(addresses, [process.pid for process in processes])
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait()


def _commands(
    module: str, argument: str, servers: int, directory: str, unix: bool
) -> list[list[str]]:
    return [
        [module, argument] + ([f"{directory}/s{i}.sock"] if unix else []) for i in range(servers)
    ]


# sansio: the ceiling.


class _SansIOClient(asyncio.Protocol):
    """The least a WebSocket client can do per request: frame it, write it, and wake the one
    caller when the reply's frame is parsed."""

    def __init__(self, protocol: ClientProtocol) -> None:
        self.protocol = protocol
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.waiter: asyncio.Future[Any] = self.loop.create_future()  # the handshake first
        self.early: list[object] = []  # events parsed with no call waiting (a greeting)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        protocol.receive_data(data)
        for event in protocol.events_received():
            if event.__class__ is Frame or isinstance(event, Response):
                if self.waiter.done():
                    self.early.append(event)
                else:
                    self.waiter.set_result(event)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection lost"))

    def _write(self) -> None:
        assert self.transport is not None
        for chunk in self.protocol.data_to_send():
            self.transport.write(chunk)

    async def call(self, frame: bytes) -> object:
        self.protocol.send_binary(frame)
        self._write()
        self.waiter = waiter = self.loop.create_future()
        return await waiter

    async def next_event(self) -> object:
        """The next frame that arrived unasked (a server's greeting)."""
        if self.early:
            return self.early.pop(0)
        self.waiter = waiter = self.loop.create_future()
        return await waiter

    @classmethod
    async def open(
        cls, address: str, path: str = "/", subprotocol: str | None = None
    ) -> _SansIOClient:
        loop = asyncio.get_running_loop()
        offered = [Subprotocol(subprotocol)] if subprotocol else None
        if address.startswith("unix://"):
            uri = parse_uri(f"ws://localhost{path}")
            _, client = await loop.create_unix_connection(
                lambda: cls(ClientProtocol(uri, subprotocols=offered, max_size=None)),
                address.removeprefix("unix://"),
            )
        else:
            uri = parse_uri(address)
            _, client = await loop.create_connection(
                lambda: cls(ClientProtocol(uri, subprotocols=offered, max_size=None)),
                uri.host,
                uri.port,
            )
        client.protocol.send_request(client.protocol.connect())
        client._write()
        await client.waiter
        return client


@contextlib.asynccontextmanager
async def sansio_reference(
    sessions: int, servers: int, frame: bytes, reply_bytes: int, unix: bool
) -> AsyncIterator[Reference]:
    """The ceiling: Sans-I/O websockets on raw asyncio Protocols at both ends."""
    with tempfile.TemporaryDirectory(prefix="oe-sansio-") as directory:
        commands = _commands(
            "openenv.bench.sansio_server", str(reply_bytes), servers, directory, unix
        )
        async with _servers(commands) as started:
            clients = [
                await _SansIOClient.open(started.addresses[i % servers]) for i in range(sessions)
            ]
            try:
                yield Reference([_bound(client.call, frame) for client in clients], started.pids)
            finally:
                for client in clients:
                    assert client.transport is not None
                    client.transport.abort()


def _bound(method: Callable[[bytes], Awaitable[object]], frame: bytes) -> Call:
    async def call() -> object:
        return await method(frame)

    return call


# websockets: the typical app.


_WS_OPTIONS: dict[str, Any] = {"compression": None, "proxy": None, "max_size": None}


@contextlib.asynccontextmanager
async def websockets_reference(
    sessions: int, servers: int, frame: bytes, reply_bytes: int, unix: bool
) -> AsyncIterator[Reference]:
    """The typical app: websockets' asyncio client and server answering every frame."""
    from websockets.asyncio.client import connect, unix_connect

    with tempfile.TemporaryDirectory(prefix="oe-ws-") as directory:
        commands = _commands(
            "openenv.bench.websockets_server", str(reply_bytes), servers, directory, unix
        )
        async with _servers(commands) as started, contextlib.AsyncExitStack() as stack:
            connections = []
            for index in range(sessions):
                url = started.addresses[index % servers]
                opened = (
                    unix_connect(url.removeprefix("unix://"), "ws://localhost/", **_WS_OPTIONS)
                    if url.startswith("unix://")
                    else connect(url, **_WS_OPTIONS)
                )
                connections.append(await stack.enter_async_context(opened))

            def ping_pong(ws: Any) -> Call:
                async def call() -> object:
                    await ws.send(frame)
                    return await ws.recv()

                return call

            yield Reference([ping_pong(ws) for ws in connections], started.pids)


# http: the baseline.


@contextlib.asynccontextmanager
async def http_reference(
    sessions: int, servers: int, app: str, body: bytes, unix: bool, client: str
) -> AsyncIterator[Reference]:
    """The same env behind ``POST /step``; ``client`` is ``aiohttp`` or ``httpx``."""
    with tempfile.TemporaryDirectory(prefix="oe-http-") as directory:
        commands = _commands("openenv.bench.http_server", app, servers, directory, unix)
        async with _servers(commands) as started:
            open_client = _aiohttp_calls if client == "aiohttp" else _httpx_calls
            async with open_client(started.addresses, sessions, body) as calls:
                yield Reference(calls, started.pids, client)


def _target(address: str) -> tuple[str | None, str]:
    """(unix socket path or None, base URL) of an HTTP server's printed address."""
    if address.startswith("unix://"):
        return address.removeprefix("unix://"), "http://localhost"
    return None, address


_JSON = {"content-type": "application/json"}


@contextlib.asynccontextmanager
async def _aiohttp_calls(
    addresses: list[str], sessions: int, body: bytes
) -> AsyncIterator[list[Call]]:
    """One aiohttp session per server (its connector pools keep-alive connections; no limit)."""
    import aiohttp

    async with contextlib.AsyncExitStack() as stack:
        pools = []
        for address in addresses:
            path, base = _target(address)
            connector = (
                aiohttp.UnixConnector(path=path, limit=0)
                if path is not None
                else aiohttp.TCPConnector(limit=0)
            )
            session = aiohttp.ClientSession(
                base, connector=connector, skip_auto_headers=["User-Agent"]
            )
            pools.append(await stack.enter_async_context(session))

        def session_calls(index: int) -> Call:
            http = pools[index % len(pools)]
            headers = {"x-session": str(index), **_JSON}

            async def call() -> object:
                async with http.post("/step", data=body, headers=headers) as response:
                    return await response.read()

            return call

        for index in range(sessions):
            reset = pools[index % len(pools)].post("/reset", headers={"x-session": str(index)})
            async with reset as response:
                response.raise_for_status()
        yield [session_calls(i) for i in range(sessions)]


@contextlib.asynccontextmanager
async def _httpx_calls(
    addresses: list[str], sessions: int, body: bytes
) -> AsyncIterator[list[Call]]:
    """One httpx client per session: a shared one costs milliseconds of CPU a step at
    hundreds of concurrent requests (its pool scans every connection per request)."""
    import socket

    import httpx

    # TCP_NODELAY: without it, small requests meet delayed ACKs (~40 ms a step).
    nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    async with contextlib.AsyncExitStack() as stack:
        calls = []
        for index in range(sessions):
            path, base = _target(addresses[index % len(addresses)])
            # verify=False: plain HTTP, and loading the CA bundle per client takes seconds
            # over a thousand clients.
            transport = (
                httpx.AsyncHTTPTransport(uds=path, verify=False)
                if path is not None
                else httpx.AsyncHTTPTransport(socket_options=nodelay, verify=False)
            )
            http = httpx.AsyncClient(
                base_url=base, transport=transport, trust_env=False, timeout=60
            )
            await stack.enter_async_context(http)
            headers = {"x-session": str(index), **_JSON}
            (await http.post("/reset", headers={"x-session": str(index)})).raise_for_status()

            def session_call(
                http: httpx.AsyncClient = http, headers: dict[str, str] = headers
            ) -> Call:
                async def call() -> object:
                    return (await http.post("/step", content=body, headers=headers)).content

                return call

            calls.append(session_call())
        yield calls
