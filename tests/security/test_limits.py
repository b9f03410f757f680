"""Limits before auth, attacked on real servers: nothing here presents a token."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import pytest

from envs.echo_env import AsyncEchoEnv, EchoAction
from tests.security.server import http, read_response, served

pytestmark = pytest.mark.timeout(180)

TOKEN = "s3cret-token-for-tests"


async def _real_client(url: str, token: str | None = None) -> str:
    async with AsyncEchoEnv(url, token=token) as env:
        await env.reset()
        result = await env.step(EchoAction(message="still served"))
        return result.observation.echoed_message


async def test_a_real_client_is_served_while_1000_silent_connections_are_open(
    tmp_path: Path,
) -> None:
    # The server may open 512 files, as a small machine's would; 1,000 connections that never
    # send a byte used to take them all, and no client got in for as long as they stayed.
    with served("echo", tmp_path, max_files=512) as server:
        silent = []
        try:
            for _ in range(1000):
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(server.host_port)
                silent.append(sock)
            answer = await asyncio.wait_for(_real_client(server.url), 60)
            assert answer == "still served"
        finally:
            for sock in silent:
                sock.close()


def test_a_silent_connection_is_closed_after_the_handshake_time_limit(tmp_path: Path) -> None:
    with served("echo", tmp_path, env={"OPENENV_HANDSHAKE_TIMEOUT": "0.5"}) as server:
        with server.connect(timeout=30) as sock:
            # The server closes it: recv sees the end (or a reset), long before 30 s.
            try:
                assert sock.recv(1) == b""
            except ConnectionResetError:
                pass


def test_a_32_mib_header_is_refused_431(tmp_path: Path) -> None:
    with served("echo", tmp_path) as server, server.connect(timeout=30) as sock:
        head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (32 << 20) + b"\r\n\r\n"
        response = _send_while_reading(sock, head)
        assert response.startswith(b"HTTP/1.1 431"), response[:200]


def test_a_long_header_line_on_a_websocket_upgrade_is_answered_431(tmp_path: Path) -> None:
    with served("echo", tmp_path) as server, server.connect(timeout=30) as sock:
        upgrade = (
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"X-Long: " + b"b" * 9000 + b"\r\n\r\n"
        )
        response = http(sock, upgrade, timeout=30)
        assert response.startswith(b"HTTP/1.1 431"), response[:200]


def test_health_answers_while_a_64_mib_header_is_refused(tmp_path: Path) -> None:
    with served("echo", tmp_path) as server:
        attacker = server.connect(timeout=60)
        refused: list[bytes] = []
        head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (64 << 20) + b"\r\n\r\n"
        sending = threading.Thread(
            target=lambda: refused.append(_send_while_reading(attacker, head))
        )
        sending.start()
        try:
            latencies = []
            while sending.is_alive() and len(latencies) < 20:
                with server.connect(timeout=30) as sock:
                    began = time.monotonic()
                    answer = http(sock, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", timeout=30)
                    latencies.append(time.monotonic() - began)
                assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
            sending.join(60)
        finally:
            attacker.close()
        assert refused and refused[0].startswith(b"HTTP/1.1 431"), refused[:1]
        # The bound is 1 s; 2 s leaves room for a loaded 2-core CI box.
        assert max(latencies) < 2.0, latencies


def test_an_http_body_over_the_frame_limit_is_refused_413(tmp_path: Path) -> None:
    with served("echo", tmp_path) as server, server.connect(timeout=30) as sock:
        head = (
            b"POST /step HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (256 << 20)
        )
        response = _send_while_reading(sock, head + b"{" * (1 << 20))
        assert response.startswith(b"HTTP/1.1 413"), response[:200]


def test_a_chunked_body_over_the_frame_limit_is_refused_413(tmp_path: Path) -> None:
    limits = {"OPENENV_MAX_FRAME_BYTES": str(1 << 20)}
    with served("echo", tmp_path, env=limits) as server, server.connect(timeout=30) as sock:
        head = (
            b"POST /step HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
        response = _send_while_reading(sock, head + chunk * 64)
        assert response.startswith(b"HTTP/1.1 413"), response[:200]


def test_limits_leave_ordinary_http_alone(tmp_path: Path) -> None:
    # Kept-alive requests, a chunked body and an empty one, all answered as before.
    with served("echo", tmp_path) as server, server.connect(timeout=30) as sock:
        body = b'{"action": {"message": "hi"}}'
        step = (
            b"POST /step HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        assert http(sock, step).startswith(b"HTTP/1.1 200")
        chunked = (
            b"POST /step HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        )
        assert http(sock, chunked).startswith(b"HTTP/1.1 200")
        assert http(
            sock, b"POST /reset HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        ).startswith(b"HTTP/1.1 200")


def _send_while_reading(sock: socket.socket, data: bytes) -> bytes:
    """Send ``data`` (stopping once the server stops reading or closes), then read the answer."""
    sock.settimeout(60)
    view = memoryview(data)
    answer = bytearray()
    sock.setblocking(False)
    deadline = time.monotonic() + 60
    while view and time.monotonic() < deadline:
        try:
            sent = sock.send(view[: 1 << 20])
            view = view[sent:]
        except BlockingIOError:
            pass
        except (BrokenPipeError, ConnectionResetError):
            break
        try:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
            if b"\r\n\r\n" in answer:
                break
        except BlockingIOError:
            time.sleep(0.001)
        except ConnectionResetError:
            break
    sock.setblocking(True)
    sock.settimeout(30)
    try:
        rest = read_response(sock)
    except (OSError, TimeoutError):
        rest = b""
    return bytes(answer) + rest
