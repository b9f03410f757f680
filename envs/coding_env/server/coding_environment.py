"""The coding environment: Python snippets run by smolagents' interpreter in a worker process.

Each session (each env instance) owns one worker process (see ``worker.py``), forked from a
fork server that has smolagents imported already, so starting one takes milliseconds. The env's
``reset`` and ``step`` await the worker over a socketpair without blocking the event loop; the
env is bound to no event loop, so it may be driven from several in turn (as the env checker's
``asyncio.run`` per call does). One call at a time per instance, as the server guarantees.

Failure handling, all reported as an observation with ``exit_code`` 1 and the session usable:

- a step past ``timeout_s``: the worker is killed; the next call gets a fresh one;
- a MemoryError under the worker's address-space limit: the worker is replaced;
- the worker dying (a signal, a crash) or sending a malformed reply: the worker is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import importlib.util
import os
import signal
import socket
import threading
import uuid
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import msgspec

from envs.coding_env.models import CodeAction, CodeObservation, CodeState
from envs.coding_env.server.fork_server import ForkServer
from envs.coding_env.server.worker import HEADER, Reply, Request, WorkerConfig
from openenv.server import Environment

__all__ = [
    "DEFAULT_MAX_OUTPUT_BYTES",
    "DEFAULT_MEMORY_LIMIT_MB",
    "DEFAULT_TIMEOUT_S",
    "CodingEnvironment",
    "RewardFn",
    "default_reward",
    "stop_fork_server",
]

RewardFn = Callable[[CodeAction, CodeObservation], float]

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024
DEFAULT_MEMORY_LIMIT_MB = 1024

IMPORTS_VAR = "OPENENV_CODING_AUTHORIZED_IMPORTS"
TIMEOUT_VAR = "OPENENV_CODING_TIMEOUT"
MAX_OUTPUT_VAR = "OPENENV_CODING_MAX_OUTPUT_BYTES"
MEMORY_VAR = "OPENENV_CODING_MEMORY_LIMIT_MB"

RESTARTED = (
    "the interpreter was restarted and the session's state (variables, functions, imports) "
    "was reset"
)
_START_TIMEOUT_S = 90.0  # a cold fork server imports smolagents first
_REAP_TIMEOUT_S = 2.0
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Reply)

T = TypeVar("T")


def default_reward(action: CodeAction, observation: CodeObservation) -> float:
    """1.0 when the code ran without error (``exit_code == 0``), else 0.0."""
    return 1.0 if observation.exit_code == 0 else 0.0


class CodingEnvironment(Environment[CodeAction, CodeObservation, CodeState]):
    """Runs each action's code in the session's persistent smolagents interpreter.

    Variables, functions and imports persist across the steps of an episode; ``reset`` starts
    a fresh interpreter process (``reset(seed=s)`` also seeds its ``random`` module).

    Args:
        authorized_imports: the complete list of modules the code may import (``"*"``: any);
            default ``$OPENENV_CODING_AUTHORIZED_IMPORTS`` (comma-separated), else smolagents'
            ``BASE_BUILTIN_MODULES`` plus ``worker.EXTRA_AUTHORIZED_IMPORTS``.
        timeout_s: wall-clock limit of one step; default ``$OPENENV_CODING_TIMEOUT``, else 5.
        max_output_bytes: stdout and stderr are each cut to this many UTF-8 bytes plus a
            marker; default ``$OPENENV_CODING_MAX_OUTPUT_BYTES``, else 64 KiB.
        memory_limit_mb: the worker's address-space limit (RLIMIT_AS), 0 for none; default
            ``$OPENENV_CODING_MEMORY_LIMIT_MB``, else 1024.
        reward_fn: ``(action, observation) -> float``; default :func:`default_reward`.
    """

    name = "coding_env"
    runs_code = True  # serve() wants a token for it on a unix socket

    def __init__(
        self,
        *,
        authorized_imports: Sequence[str] | None = None,
        timeout_s: float | None = None,
        max_output_bytes: int | None = None,
        memory_limit_mb: int | None = None,
        reward_fn: RewardFn | None = None,
    ) -> None:
        if authorized_imports is None:
            listed = os.environ.get(IMPORTS_VAR, "").split(",")
            authorized_imports = [name.strip() for name in listed if name.strip()] or None
        if authorized_imports is not None:
            if isinstance(authorized_imports, str):
                raise TypeError("authorized_imports is a list of module names, not a string")
            authorized_imports = tuple(authorized_imports)
            _check_installed(authorized_imports)
        self.authorized_imports: tuple[str, ...] | None = authorized_imports
        self.timeout_s = _setting(timeout_s, TIMEOUT_VAR, float, DEFAULT_TIMEOUT_S)
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, not {self.timeout_s}")
        self.max_output_bytes = _setting(
            max_output_bytes, MAX_OUTPUT_VAR, int, DEFAULT_MAX_OUTPUT_BYTES
        )
        if self.max_output_bytes < 1:
            raise ValueError(f"max_output_bytes must be positive, not {self.max_output_bytes}")
        self.memory_limit_mb = _setting(memory_limit_mb, MEMORY_VAR, int, DEFAULT_MEMORY_LIMIT_MB)
        if self.memory_limit_mb < 0:
            raise ValueError(f"memory_limit_mb must be >= 0 (0: none), not {self.memory_limit_mb}")
        self.reward_fn: RewardFn = reward_fn or default_reward
        self._config = WorkerConfig(
            authorized_imports=self.authorized_imports,
            max_output_bytes=self.max_output_bytes,
            memory_limit_mb=self.memory_limit_mb or None,
        )
        # Replies carry two clipped outputs (marker included) and a little framing.
        self._max_reply = 4 * self.max_output_bytes + 64 * 1024
        self._state = CodeState()
        self._worker: _Worker | None = None

    @classmethod
    def prewarm(cls) -> None:
        """Check the ``OPENENV_CODING_*`` settings and start the fork server in the background
        (it imports smolagents once; every worker is then forked from it)."""
        cls()
        _spawner().submit(_FORK_SERVER.ensure_running)

    @property
    def worker_pid(self) -> int | None:
        """The process id of the current worker, if one runs."""
        worker = self._worker
        return worker.pid if worker is not None and worker.alive else None

    async def reset(
        self, seed: int | None = None, episode_id: str | None = None, **options: Any
    ) -> CodeObservation:
        worker = self._worker
        if worker is None or worker.used or not worker.alive:
            self._drop_worker()
            await self._start_worker()
        self._state = CodeState(episode_id=episode_id or uuid.uuid4().hex, step_count=0)
        if seed is not None:
            seeded = await self._run(Request(seed=seed))
            if seeded.exit_code:
                raise RuntimeError(f"could not seed the interpreter: {seeded.stderr}")
        return CodeObservation(reward=0.0)

    async def step(self, action: CodeAction) -> CodeObservation:
        self._state.step_count += 1
        observation = await self._run(Request(code=action.code))
        observation.reward = float(self.reward_fn(action, observation))
        self._state.last_exit_code = observation.exit_code
        return observation

    @property
    def state(self) -> CodeState:
        return self._state

    async def fork(self) -> CodingEnvironment:
        """A copy of this env whose worker is a fork of this one's (see the class doc)."""
        twin = copy.copy(self)  # settings are shared read-only; state and worker are its own
        twin._state = msgspec.structs.replace(self._state)
        twin._worker = None
        worker = self._worker
        if worker is None or not worker.alive:
            return twin  # no interpreter yet (or a dead one): the copy starts its own, too
        try:
            async with asyncio.timeout(self.timeout_s):
                twin._worker = await worker.fork()
        except BaseException as exc:
            # A late reply would be misread as the next step's: this worker cannot be trusted.
            self._drop_worker()
            if isinstance(exc, TimeoutError | _WorkerError):
                message = f"the interpreter could not be forked ({exc}); {RESTARTED}"
                raise RuntimeError(message) from exc
            raise
        return twin

    async def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.kill()
            await worker.reap()

    # The worker.

    async def _start_worker(self) -> _Worker:
        worker = await _Worker.start(self._config, self._max_reply)
        self._worker = worker
        return worker

    def _drop_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.kill()  # the fork server reaps it

    async def _run(self, request: Request) -> CodeObservation:
        worker = self._worker
        if worker is None or not worker.alive:
            worker = await self._start_worker()
        try:
            async with asyncio.timeout(self.timeout_s):
                reply = await worker.call(request)
        except TimeoutError:
            await self._discard(worker)
            return _failure(
                f"TimeoutError: the step exceeded the {self.timeout_s:g} s time limit and was "
                f"stopped; {RESTARTED}"
            )
        except _WorkerError as exc:
            status = await self._discard(worker)
            what = exc.what or status
            return _failure(f"WorkerDied: the interpreter process {what}; {RESTARTED}")
        except BaseException:
            # Cancelled mid-step: the reply may still come, so this worker cannot be trusted.
            self._drop_worker()
            raise
        observation = CodeObservation(
            stdout=reply.stdout, stderr=reply.stderr, exit_code=reply.exit_code
        )
        if reply.out_of_memory:
            await self._discard(worker)
            limit = f"{self.memory_limit_mb} MB" if self.memory_limit_mb else "none"
            observation.stderr += (
                f"[the interpreter ran out of memory (limit: {limit}); {RESTARTED}]\n"
            )
            observation.metadata = {"interpreter_restarted": True}
        return observation

    async def _discard(self, worker: _Worker) -> str:
        """Kill ``worker`` and describe how it ended."""
        worker.kill()
        if self._worker is worker:
            self._worker = None
        return _describe_exit(await worker.reap())


class _WorkerError(Exception):
    """The worker died (``what`` None) or broke the protocol (``what`` says how)."""

    def __init__(self, what: str | None = None) -> None:
        super().__init__(what or "the worker died")
        self.what = what


class _Worker:
    """The server's handle on one worker process: its pid and its socket."""

    def __init__(self, pid: int, sock: socket.socket, max_reply: int) -> None:
        self.pid = pid
        self.sock = sock
        self.max_reply = max_reply
        self.used = False  # whether it ran code (then reset replaces it)
        pidfd = _open_pidfd(pid)
        # Killed when dropped, even without close(): no worker outlives its handle.
        self._finalizer = weakref.finalize(self, _kill, pid, pidfd, sock)

    @classmethod
    async def start(cls, config: WorkerConfig, max_reply: int) -> _Worker:
        future = _spawner().submit(_FORK_SERVER.fork, config)
        try:
            async with asyncio.timeout(_START_TIMEOUT_S):
                pid, sock = await asyncio.wrap_future(future)
        except BaseException:
            future.add_done_callback(_kill_launched)  # if it starts after all, it is dropped
            raise
        return cls(pid, sock, max_reply)

    @property
    def alive(self) -> bool:
        """Not yet killed (it may have died by itself; the next call finds out)."""
        return self._finalizer.alive

    def kill(self) -> None:
        """SIGKILL the process and close the socket; idempotent and non-blocking."""
        self._finalizer()

    async def reap(self) -> int | None:
        """Wait (briefly) for the killed process to be gone; its exit code, if known."""
        return await _on_spawner(_FORK_SERVER.wait, self.pid, _REAP_TIMEOUT_S)

    async def fork(self) -> _Worker:
        """A copy of this worker process (see ``worker._fork``), adopted by the fork server."""
        ours, theirs = socket.socketpair()
        try:
            payload = _ENCODER.encode(Request(fork=True))
            frame = HEADER.pack(len(payload)) + payload
            try:
                # A few bytes into an idle socket's empty buffer: sent at once, never partially.
                sent = socket.send_fds(self.sock, [frame], [theirs.fileno()])
            except OSError as exc:
                raise _WorkerError() from exc
            finally:
                theirs.close()
            if sent != len(frame):
                raise _WorkerError("could not be sent a fork request")
            data = await self._receive(asyncio.get_running_loop())
            try:
                reply = _DECODER.decode(memoryview(data)[HEADER.size :])
            except msgspec.MsgspecError as exc:
                raise _WorkerError(f"sent a malformed reply ({exc})") from exc
            # The pid comes from an untrusted process: the fork server vouches for it.
            if reply.pid is None or not await _on_spawner(_FORK_SERVER.adopt, reply.pid):
                raise _WorkerError(f"could not be forked ({reply.stderr.strip() or reply.pid})")
        except BaseException:
            ours.close()
            raise
        ours.setblocking(False)
        twin = _Worker(reply.pid, ours, self.max_reply)
        twin.used = self.used
        return twin

    async def call(self, request: Request) -> Reply:
        loop = asyncio.get_running_loop()
        if request.code is not None:
            self.used = True
        payload = _ENCODER.encode(request)
        try:
            await loop.sock_sendall(self.sock, HEADER.pack(len(payload)) + payload)
            data = await self._receive(loop)
        except OSError as exc:
            raise _WorkerError() from exc
        try:
            return _DECODER.decode(memoryview(data)[HEADER.size :])
        except msgspec.MsgspecError as exc:
            raise _WorkerError(f"sent a malformed reply ({exc})") from exc

    async def _receive(self, loop: asyncio.AbstractEventLoop) -> bytearray:
        data = bytearray()
        end = HEADER.size
        while len(data) < end:
            chunk = await loop.sock_recv(self.sock, max(end - len(data), 64 * 1024))
            if not chunk:
                raise _WorkerError()
            data += chunk
            if end == HEADER.size and len(data) >= HEADER.size:
                (size,) = HEADER.unpack_from(data)
                if size > self.max_reply:
                    raise _WorkerError(f"sent an oversized reply ({size} bytes)")
                end += size
        if len(data) > end:
            raise _WorkerError("sent more than one reply")
        return data


# Process management. Everything that talks to the fork server runs on one thread.

_FORK_SERVER = ForkServer()
_spawner_pool: ThreadPoolExecutor | None = None
_spawner_lock = threading.Lock()


def _spawner() -> ThreadPoolExecutor:
    global _spawner_pool
    with _spawner_lock:
        if _spawner_pool is None:
            _spawner_pool = ThreadPoolExecutor(1, thread_name_prefix="openenv-coding-spawner")
        return _spawner_pool


async def _on_spawner(function: Callable[..., T], *args: Any) -> T:
    return await asyncio.wrap_future(_spawner().submit(function, *args))


def stop_fork_server() -> None:
    """Stop this process's fork server, killing every worker it forked (blocks; for tests and
    shutdown hooks). The next worker needed starts a new one."""
    _spawner().submit(_FORK_SERVER.close).result()


def _open_pidfd(pid: int) -> int | None:
    """A pidfd, so that a later kill can never hit a recycled pid (Linux >= 5.3)."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _kill(pid: int, pidfd: int | None, sock: socket.socket) -> None:
    try:
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except OSError:
        pass  # already gone
    finally:
        if pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(pidfd)
        sock.close()


def _kill_launched(future: Future[tuple[int, socket.socket]]) -> None:
    if not future.cancelled() and future.exception() is None:
        pid, sock = future.result()
        _kill(pid, None, sock)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "stopped responding"
    if code < 0:
        try:
            return f"was killed by signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _failure(stderr: str) -> CodeObservation:
    return CodeObservation(
        stderr=stderr + "\n", exit_code=1, metadata={"interpreter_restarted": True}
    )


def _setting(value: T | None, variable: str, parse: Callable[[str], T], default: T) -> T:
    if value is not None:
        return value
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        return parse(raw)
    except ValueError:
        raise ValueError(f"{variable}={raw!r} is not a valid {parse.__name__}") from None


def _check_installed(modules: Sequence[str]) -> None:
    missing = [
        name
        for name in modules
        if name != "*" and importlib.util.find_spec(name.split(".")[0]) is None
    ]
    if missing:
        raise ValueError(f"authorized imports that are not installed: {', '.join(missing)}")
