"""The ceiling server: websockets' Sans-I/O protocol on a raw asyncio ``Protocol``, answering
every binary frame with a fixed reply straight from ``data_received``.

No task, queue or future stands between a frame and its reply: this is as little as a Python
WebSocket server can do per message, so ``our steps/s ÷ its steps/s`` is the share of the
pure-Python ceiling we reach. Run as ``python -m openenv.bench.sansio_server REPLY_BYTES
[UNIX_SOCKET_PATH]``; it prints its address (``ws://127.0.0.1:PORT/`` or ``unix://PATH``) once
it accepts connections.
"""

from __future__ import annotations

import asyncio
import sys
from typing import cast

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol


class SansIOEcho(asyncio.Protocol):
    """One connection: the handshake, then a fixed reply per data frame."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.protocol = ServerProtocol(max_size=None)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        protocol.receive_data(data)
        for event in protocol.events_received():
            if event.__class__ is Frame:
                if event.opcode is Opcode.BINARY or event.opcode is Opcode.TEXT:
                    protocol.send_binary(self.reply)
            elif isinstance(event, Request):
                protocol.send_response(protocol.accept(event))
        transport = self.transport
        assert transport is not None
        for chunk in protocol.data_to_send():
            if chunk:
                transport.write(chunk)
            else:
                transport.close()

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        return None


async def main(reply_bytes: int, unix_path: str | None) -> None:
    reply = b"r" * reply_bytes
    loop = asyncio.get_running_loop()
    if unix_path is not None:
        server = await loop.create_unix_server(lambda: SansIOEcho(reply), unix_path, backlog=4096)
        print(f"unix://{unix_path}", flush=True)
    else:
        server = await loop.create_server(lambda: SansIOEcho(reply), "127.0.0.1", 0, backlog=4096)
        print(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/", flush=True)
    async with server:
        await server.serve_forever()


def _run() -> None:
    from openenv.bench import run_fast
    from openenv.server.serve import exit_when_stdin_closes

    exit_when_stdin_closes()  # the bench that started us is gone
    run_fast(main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None))


if __name__ == "__main__":
    _run()
