"""The per-step HTTP baseline: the same environment behind ``POST /reset`` and ``POST /step``
(JSON bodies, one env per ``x-session`` header), served by uvicorn as an HTTP-per-step env
server would be, with the fast parts a tuned one would use (uvloop, httptools). Run as
``python -m openenv.bench.http_server ENV [UNIX_SOCKET_PATH]``; prints its URL
(``http://127.0.0.1:PORT`` or ``unix://PATH``)."""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openenv.server.serve import exit_when_stdin_closes, load_app


def http_app(env_cls: Any) -> Starlette:
    envs: dict[str, Any] = {}
    decode_action = msgspec.json.Decoder(env_cls.action_type).decode

    def reply(observation: Any) -> Response:
        return Response(msgspec.json.encode(observation), media_type="application/json")

    async def reset(request: Request) -> Response:
        env = envs[request.headers["x-session"]] = env_cls()
        return reply(env.reset())

    async def step(request: Request) -> Response:
        env = envs[request.headers["x-session"]]
        return reply(env.step(decode_action(await request.body())))

    return Starlette(
        routes=[Route("/reset", reset, methods=["POST"]), Route("/step", step, methods=["POST"])]
    )


def main() -> None:
    env_cls = load_app(sys.argv[1]).state.openenv.env_cls
    if len(sys.argv) > 2:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(sys.argv[2])
        address = f"unix://{sys.argv[2]}"
    else:
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP;
        # without it every response meets Nagle + delayed ACK (~40 ms).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        address = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.listen(4096)  # connections queue until uvicorn serves: the address is good at once
    print(address, flush=True)
    config = uvicorn.Config(
        http_app(env_cls),
        log_level="warning",
        access_log=False,
        lifespan="off",
        loop="uvloop",
        http="httptools",
        backlog=4096,
        # Connections idle between the bench's rounds: a client keeps them, so does the server.
        timeout_keep_alive=3600,
    )
    server = uvicorn.Server(config)
    exit_when_stdin_closes(server)  # the bench that started us is gone
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(server.serve(sockets=[sock]))


if __name__ == "__main__":
    main()
