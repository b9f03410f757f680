"""``LocalProcessProvider``: env servers as local subprocesses. No isolation at all: the env runs
with the caller's user, files and network. It is the embedded default because it needs nothing
but Python; use the Docker provider for untrusted work."""

from __future__ import annotations

import asyncio
import atexit
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from openenv import procfs
from openenv.cleanup import exit_on_sigterm
from openenv.endpoint import Endpoint, is_loopback
from openenv.exceptions import ProviderError
from openenv.providers.base import Provider, ServerHandle
from openenv.providers.listing import record_server
from openenv.providers.owners import mark_owned

__all__ = ["LocalProcessProvider"]

_STOP_GRACE_S = 3.0
_LOG_TAIL_BYTES = 2000
_PROC = Path("/proc/self")


@dataclass
class _Child:
    process: asyncio.subprocess.Process
    workdir: Path


class LocalProcessProvider(Provider):
    """Runs each env server as ``python -m openenv serve APP`` in a subprocess.

    Servers listen on a unix socket in a private temp directory (default) or on a TCP port of
    ``host`` (127.0.0.1 unless told otherwise) chosen by the kernel, with a random bearer token
    each unless ``auth=False``. A server exits by itself when the process that started it dies
    (it watches its stdin), so a killed trainer leaves no server behind.

    Args:
        app: what ``openenv serve`` serves: an env package (``envs.echo_env``) or ``module:app``.
        transport: ``"unix"`` or ``"tcp"``.
        host: the address tcp servers bind (e.g. a cluster node's own address); beyond
            loopback only with ``auth``, so that reaching the port is not enough.
        env: extra environment variables for the server (e.g. ``OPENENV_MAX_SESSIONS``).
        auth: give each server a random token.
        startup_timeout: seconds a server may take to accept sessions.
        python: the interpreter to run servers with.
        handle_sigterm: make SIGTERM unwind the program like Ctrl-C (``SystemExit(143)``), so
            that the servers and their temp folders (socket, log) are removed; only while
            SIGTERM has its default action (see :func:`openenv.cleanup.exit_on_sigterm`).
            Servers and folders left at interpreter exit are removed by an exit hook.
    """

    def __init__(
        self,
        app: str,
        *,
        transport: Literal["unix", "tcp"] = "unix",
        host: str = "127.0.0.1",
        env: Mapping[str, str] | None = None,
        auth: bool = True,
        startup_timeout: float = 30.0,
        python: str = sys.executable,
        handle_sigterm: bool = True,
    ) -> None:
        if transport not in ("unix", "tcp"):
            raise ValueError(f"transport must be 'unix' or 'tcp', not {transport!r}")
        if not auth and not is_loopback(host):
            raise ValueError(f"refusing to serve on {host} without a token; keep auth=True")
        self.app = app
        self.transport = transport
        self.host = host
        self.env = dict(env or {})
        self.auth = auth
        self.startup_timeout = startup_timeout
        self.python = python
        self.handle_sigterm = handle_sigterm
        self._children: dict[str, _Child] = {}
        self._handles: dict[str, ServerHandle] = {}

    async def start(self) -> ServerHandle:
        if self.handle_sigterm:
            exit_on_sigterm()
        workdir = Path(tempfile.mkdtemp(prefix="openenv-"))
        mark_owned(workdir, "process")  # so that `openenv prune` removes it after a SIGKILL
        token = secrets.token_urlsafe(24) if self.auth else None
        ready_read, ready_write = os.pipe()
        try:
            process = await self._spawn(workdir, token, ready_write)
        except BaseException:
            os.close(ready_read)
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        finally:
            os.close(ready_write)
        child = _Child(process, workdir)
        _live.add(child)
        try:
            address = await self._ready_address(child, ready_read)
        except BaseException:
            await _terminate(child)
            raise
        handle = ServerHandle(str(process.pid), Endpoint.parse(address, token))
        record_server(workdir, "process", handle)  # for `openenv top`
        self._children[handle.id] = child
        self._handles[handle.id] = handle
        return handle

    async def stop(self, server: ServerHandle) -> None:
        child = self._children.pop(server.id, None)
        self._handles.pop(server.id, None)
        if child is not None:
            await _terminate(child)

    async def is_alive(self, server: ServerHandle) -> bool:
        child = self._children.get(server.id)
        return child is not None and _running(child.process)

    def running(self) -> list[ServerHandle]:
        return list(self._handles.values())

    async def kill(self, server: ServerHandle) -> None:
        child = self._children.get(server.id)
        if child is not None and child.process.returncode is None:
            _signal(child.process, signal.SIGKILL)

    async def _spawn(
        self, workdir: Path, token: str | None, ready_fd: int
    ) -> asyncio.subprocess.Process:
        if self.transport == "unix":
            where = ["--uds", str(workdir / "env.sock")]
            if token is None:  # auth=False: the caller's choice; the socket is 0600 anyway
                where.append("--insecure-no-token")
        else:
            where = ["--host", self.host, "--port", "0"]
        args = ["-m", "openenv", "serve", self.app, *where]
        args += ["--ready-fd", str(ready_fd), "--watch-parent"]
        # The token travels in the environment, not argv, so `ps` does not show it.
        env = {**os.environ, **self.env, "OPENENV_TOKEN": token or ""}
        log = (workdir / "server.log").open("wb")
        try:
            return await asyncio.create_subprocess_exec(
                self.python,
                *args,
                stdin=asyncio.subprocess.PIPE,  # closes when we die: the server then exits
                stdout=log,
                stderr=log,
                env=env,
                pass_fds=(ready_fd,),
                start_new_session=True,  # a Ctrl-C is ours to handle, not every server's
            )
        finally:
            log.close()

    async def _ready_address(self, child: _Child, ready_fd: int) -> str:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(ready_fd, "rb", 0)
        )
        try:
            async with asyncio.timeout(self.startup_timeout):
                line = await reader.readline()
        except TimeoutError:
            raise ProviderError(
                f"{self.app} server did not become ready within {self.startup_timeout} s"
                f"{_log_tail(child.workdir)}"
            ) from None
        finally:
            transport.close()
        if not line:
            code = await child.process.wait()
            raise ProviderError(
                f"{self.app} server exited with code {code} during start-up"
                f"{_log_tail(child.workdir)}"
            )
        return line.decode().strip()


async def _terminate(child: _Child) -> None:
    process = child.process
    if process.returncode is None:
        try:
            _signal(process, signal.SIGTERM)
            await asyncio.wait_for(process.wait(), _STOP_GRACE_S)
        except TimeoutError:
            _signal(process, signal.SIGKILL)
            await process.wait()
    if process.stdin is not None:
        process.stdin.close()
    shutil.rmtree(child.workdir, ignore_errors=True)
    _live.discard(child)


class _LiveChildren:
    """Servers this process started and has not stopped: killed, and their folders removed, at
    interpreter exit (e.g. after SIGTERM unwound a sync program whose client loop is gone)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._children: dict[int, _Child] = {}

    def add(self, child: _Child) -> None:
        with self._lock:
            self._children[id(child)] = child

    def discard(self, child: _Child) -> None:
        with self._lock:
            self._children.pop(id(child), None)

    def remove_all(self) -> None:
        with self._lock:
            leftovers = list(self._children.values())
            self._children.clear()
        for child in leftovers:
            if child.process.returncode is None:
                try:
                    os.kill(child.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            shutil.rmtree(child.workdir, ignore_errors=True)


_live = _LiveChildren()
atexit.register(_live.remove_all)


def _signal(process: asyncio.subprocess.Process, signum: int) -> None:
    """Signal ``process`` with ``os.kill``: ``Process.send_signal`` polls first, which reaps a
    child that already died behind asyncio's child watcher (which then logs "Unknown child
    process pid ..., will report returncode 255"). Until the watcher reaps it, a dead child
    is a zombie, so its pid cannot have been reused."""
    try:
        os.kill(process.pid, signum)
    except ProcessLookupError:
        pass


def _running(process: asyncio.subprocess.Process) -> bool:
    """Whether ``process`` runs; a killed one may not be reaped (``returncode`` set) yet."""
    if process.returncode is not None:
        return False
    if not _PROC.exists():
        return True  # no /proc here (macOS): the returncode is all we know
    return procfs.is_running(process.pid)


def _log_tail(workdir: Path) -> str:
    try:
        data = (workdir / "server.log").read_bytes()[-_LOG_TAIL_BYTES:]
    except OSError:
        return ""
    text = data.decode(errors="replace").strip()
    return f"; its log ends with:\n{text}" if text else ""
