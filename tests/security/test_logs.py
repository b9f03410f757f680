"""Logs: no secret at any level, and no traceback for the ordinary ways sessions end."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from envs.echo_env import AsyncEchoEnv, EchoAction, EchoEnv
from openenv.protocol import Reset, Step
from tests.security.server import served
from tests.security.wire import REQUESTS, RawSession

pytestmark = pytest.mark.timeout(300)

TOKEN = "log-test-token-d41d8cd98f00"


async def test_no_token_or_ticket_in_server_or_client_logs_at_debug(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    env = {"OPENENV_TOKEN": TOKEN}
    with served("echo", tmp_path, env=env, log_level="debug") as server:
        async with AsyncEchoEnv(server.url, token=TOKEN) as parent:
            await parent.reset()
            tickets = await parent.fork_tickets(2)
            async with AsyncEchoEnv(server.url, token=TOKEN) as other:
                await other.reset()
            child = await parent.fork()
            await child.step(EchoAction(message="forked"))
            await child.close()
        output = server.output()
    client_lines = "\n".join(record.getMessage() for record in caplog.records)
    assert "Authorization" in output or "authorization" in output  # debug lines were written
    for secret in [TOKEN, *tickets, *(t.partition(".")[2] for t in tickets)]:
        assert secret not in output, f"server log holds {secret!r}"
        assert secret not in client_lines, f"client log holds {secret!r}"


def test_200_sessions_closed_every_way_log_no_traceback(tmp_path: Path) -> None:
    with served("echo", tmp_path, log_level="info") as server:
        host, port = server.host_port

        async def clean() -> None:
            async with AsyncEchoEnv(server.url) as env:
                await env.reset()
                await env.step(EchoAction(message="hi"))

        async def vanish() -> None:  # gone after a reset, without a close frame
            session = RawSession(host, port)
            session.recv()
            session.send(REQUESTS.encode(Reset(id=0)))
            session.recv()
            session.close()

        async def mid_request() -> None:
            session = RawSession(host, port)
            session.recv()
            session.send(REQUESTS.encode(Step(id=1, action=EchoAction(message="x"))))
            session.close()

        async def upstream_close() -> None:
            async with connect(f"ws://{host}:{port}/ws", proxy=None) as ws:
                await ws.send(json.dumps({"type": "reset", "data": {}}))
                await ws.recv()
                await ws.send(json.dumps({"type": "close"}))
                await asyncio.wait_for(ws.wait_closed(), 10)

        async def upstream_drop() -> None:
            ws = await connect(f"ws://{host}:{port}/ws", proxy=None)
            await ws.send(json.dumps({"type": "reset", "data": {}}))
            await ws.recv()
            ws.transport.abort()

        def sync_with() -> None:
            with EchoEnv(server.url) as env:
                env.reset()

        async def run() -> None:
            ways = [clean, vanish, mid_request, upstream_close, upstream_drop]
            for index in range(200):
                if index % 6 == 5:
                    await asyncio.to_thread(sync_with)
                else:
                    await ways[index % 6]()

        asyncio.run(run())
        # Every session has ended once the server reports none active.
        deadline_rounds = 200
        while deadline_rounds:
            with server.connect() as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                answer = b"".join(iter(lambda: sock.recv(65536), b""))
            if b'"active_sessions":0' in answer:
                break
            deadline_rounds -= 1
            asyncio.run(asyncio.sleep(0.05))
        output = server.output()
    assert output.count("opened") >= 200, output[-2000:]
    assert "Traceback" not in output, output[output.index("Traceback") - 500 :][:3000]
