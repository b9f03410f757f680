"""The typical-app reference: websockets' own asyncio server answering every frame with a
fixed reply, as an env server written the usual way with websockets would, less the env.

Run as ``python -m openenv.bench.websockets_server REPLY_BYTES [UNIX_SOCKET_PATH]``; it prints
its address (``ws://127.0.0.1:PORT/`` or ``unix://PATH``) once it accepts connections.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from websockets.asyncio.server import ServerConnection, serve, unix_serve


async def main(reply_bytes: int, unix_path: str | None) -> None:
    reply = b"r" * reply_bytes

    async def pong(ws: ServerConnection) -> None:
        async for _ in ws:
            await ws.send(reply)

    options: dict[str, Any] = {"compression": None, "max_size": None}
    if unix_path is not None:
        async with unix_serve(pong, unix_path, **options):
            print(f"unix://{unix_path}", flush=True)
            await asyncio.Event().wait()
    async with serve(pong, "127.0.0.1", 0, **options) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"ws://127.0.0.1:{port}/", flush=True)
        await asyncio.Event().wait()  # until killed


def _run() -> None:
    from openenv.bench import run_fast
    from openenv.server.serve import exit_when_stdin_closes

    exit_when_stdin_closes()  # the bench that started us is gone
    run_fast(main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None))


if __name__ == "__main__":
    _run()
