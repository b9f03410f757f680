"""Real env servers for the attack tests: ``openenv serve`` in a subprocess of its own."""

from __future__ import annotations

import os
import re
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_URL = re.compile(rb"serving on (ws://[^\s]+|unix://[^\s]+)")
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    """A running server: its process, address and the file its output goes to."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.url.removeprefix("ws://").removesuffix("/ws").rpartition(":")
        return host, int(port)

    @property
    def unix_socket(self) -> str:
        return self.url.removeprefix("unix://")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def connect(self, timeout: float = 10.0) -> socket.socket:
        """A raw TCP connection to the server."""
        return socket.create_connection(self.host_port, timeout=timeout)


@contextmanager
def served(
    target: str,
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    max_files: int | None = None,
    log_level: str = "warning",
) -> Iterator[Served]:
    """``openenv serve target`` on 127.0.0.1 port 0 (or as ``args`` say), until the block ends.

    ``max_files`` caps the server's open files (soft and hard), as a small machine's would be.
    """
    log = tmp_path / f"server-{time.monotonic_ns()}.log"
    where = args if args is not None else ["--host", "127.0.0.1", "--port", "0"]
    command = [sys.executable, "-m", "openenv", "serve", target, *where, "--log-level", log_level]

    def limit() -> None:
        if max_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max_files, max_files))

    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": _pythonpath(), **(env or {})},
            cwd=tmp_path,  # not the checkout: PYTHONPATH decides which openenv runs
            preexec_fn=limit,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            found = _URL.search(log.read_bytes())
            if found:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield Served(process, found.group(1).decode(), log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _pythonpath() -> str:
    existing = os.environ.get("PYTHONPATH", "")
    return f"{existing}{os.pathsep}{ROOT}" if existing else str(ROOT)


def http(sock: socket.socket, request: bytes, timeout: float = 10.0) -> bytes:
    """Send ``request`` and read the response until the server closes or the headers and
    ``Content-Length`` bytes of body are in."""
    sock.settimeout(timeout)
    sock.sendall(request)
    return read_response(sock)


def read_response(sock: socket.socket) -> bytes:
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = re.search(rb"(?i)content-length:\s*(\d+)", head)
            if length and len(body) >= int(length.group(1)):
                return data
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")
