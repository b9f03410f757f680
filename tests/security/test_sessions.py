"""Attacks from inside a session (a client with the token), on real servers: the work and
memory one session can make the server spend stay bounded, and bad input is answered."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import pytest

from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv.exceptions import CapacityError, InvalidMessageError
from openenv.protocol import Error, ErrorCode, Reset, Result, Step
from tests.security.server import http, rss_mib, served
from tests.security.wire import REPLIES, REQUESTS, RawSession

pytestmark = pytest.mark.timeout(240)

BIG_APP = "tests.security.big_env:app"
# What a connection may hold: one read of input, the write buffer's high-water mark and one
# reply (1 MB here), plus the allocator's slack. Without backpressure the attacks below add
# hundreds of MiB.
MEMORY_BOUND_MIB = 64


def _health(server_url: str, host_port: tuple[str, int]) -> None:
    with socket.create_connection(host_port, timeout=30) as sock:
        assert http(sock, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 200")


def _peak_rss_after(server: object, rounds: int = 5) -> float:
    """The server's RSS, read after each of ``rounds`` /health answers (each one means the
    event loop went round since the attack was written)."""
    peak = 0.0
    for _ in range(rounds):
        _health(server.url, server.host_port)  # type: ignore[attr-defined]
        peak = max(peak, rss_mib(server.process.pid))  # type: ignore[attr-defined]
        time.sleep(0.2)
    return peak


def test_pipelined_steps_with_large_replies_do_not_pile_up(tmp_path: Path) -> None:
    # 300 steps in ~12 KB of input, each answered with 1 MB, from a client that never reads.
    with served(BIG_APP, tmp_path) as server:
        session = RawSession(*server.host_port)
        session.recv()  # the greeting
        session.send(REQUESTS.encode(Reset(id=0)))
        session.recv()
        before = rss_mib(server.process.pid)
        steps = [
            REQUESTS.encode(Step(id=i, action=EchoAction(message="big:1000000")))
            for i in range(1, 301)
        ]
        session.sock.sendall(session.frames(*steps))
        grown = _peak_rss_after(server) - before
        session.close()
        assert grown < MEMORY_BOUND_MIB, f"the server grew by {grown:.0f} MiB"


def test_a_ping_flood_whose_pongs_are_never_read_is_held_back(tmp_path: Path) -> None:
    with served("echo", tmp_path) as server:
        session = RawSession(*server.host_port)
        session.recv()  # the greeting
        before = rss_mib(server.process.pid)
        batch = _masked_ping() * 8192  # 1 MiB of pings (131 bytes each)
        sent, stalled_since = 0, None
        session.sock.setblocking(False)
        view = memoryview(batch)
        while sent < (256 << 20):
            try:
                count = session.sock.send(view)
                sent += count
                view = view[count:] or memoryview(batch)
                stalled_since = None
            except BlockingIOError:
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > 3:
                    break  # the server stopped reading
                time.sleep(0.01)
        grown = _peak_rss_after(server) - before
        session.close()
        assert grown < MEMORY_BOUND_MIB, (
            f"the server grew by {grown:.0f} MiB after {sent >> 20} MiB of pings"
        )


def _masked_ping() -> bytes:
    from websockets.client import ClientProtocol
    from websockets.uri import parse_uri

    protocol = ClientProtocol(parse_uri("ws://x/"))
    protocol.state = protocol.state.__class__.OPEN
    protocol.send_ping(b"p" * 125)
    return b"".join(protocol.data_to_send())


async def test_a_fork_of_a_large_env_does_not_stall_other_sessions(tmp_path: Path) -> None:
    with served(BIG_APP, tmp_path) as server:
        async with AsyncEchoEnv(server.url) as forking, AsyncEchoEnv(server.url) as other:
            await forking.reset()
            await other.reset()
            fork = asyncio.create_task(forking.fork_tickets(4))
            steps_during_fork = 0
            while not fork.done():
                await other.step(EchoAction(message="still here"))
                steps_during_fork += 1
            assert len(await fork) == 4
        # Copying on the event loop answered none until all four copies were made.
        assert steps_during_fork >= 10, steps_during_fork


async def test_forks_are_capped_per_request_and_per_session(tmp_path: Path) -> None:
    limits = {"OPENENV_MAX_FORKS_PER_REQUEST": "4", "OPENENV_MAX_PARKED_FORKS": "6"}
    with served("echo", tmp_path, env=limits) as server:
        async with AsyncEchoEnv(server.url) as env:
            await env.reset()
            with pytest.raises(InvalidMessageError, match="between 1 and 4"):
                await env.fork_tickets(5)
            assert len(await env.fork_tickets(4)) == 4
            with pytest.raises(CapacityError, match="may park at most 6"):
                await env.fork_tickets(3)
            assert (await env.step(EchoAction(message="ok"))).observation.echoed_message == "ok"


@pytest.mark.parametrize("key", ["seed", "episode_id", "self"])
def test_reset_options_that_collide_with_parameters_are_refused(tmp_path: Path, key: str) -> None:
    with served("echo", tmp_path) as server:
        session = RawSession(*server.host_port)
        session.recv()  # the greeting
        session.send(REQUESTS.encode(Reset(id=1, options={key: 3})))
        error = REPLIES.decode(session.recv())
        assert isinstance(error, Error) and error.code == ErrorCode.INVALID_MESSAGE, error
        assert key in error.message
        session.send(REQUESTS.encode(Reset(id=2, options={"method": 1})))
        assert isinstance(REPLIES.decode(session.recv()), Result)  # the session goes on
        session.close()


def test_upstream_reset_data_named_self_or_method(tmp_path: Path) -> None:
    with served("echo", tmp_path) as server:
        session = RawSession(*server.host_port, ours=False)
        session.send(json.dumps({"type": "reset", "data": {"self": 1}}))
        reply = json.loads(session.recv())
        assert reply["type"] == "error" and reply["data"]["code"] == "VALIDATION_ERROR", reply
        session.send(json.dumps({"type": "reset", "data": {"method": 1}}))
        assert json.loads(session.recv())["type"] == "observation"
        session.close()
        with server.connect() as sock:
            body = b'{"self": 1}'
            request = b"POST /reset HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
            assert http(sock, request % (len(body), body)).startswith(b"HTTP/1.1 422")
