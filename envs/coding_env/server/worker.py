"""The interpreter worker: a process of its own per session, running smolagents' interpreter.

The smolagents interpreter cannot be interrupted from inside and is no security boundary, so
it never runs in the server: each session's code runs here, in a process the server can kill.

Wire protocol, over a socketpair: the server sends a :class:`Request` frame, the worker answers
with exactly one :class:`Reply` frame. A frame is a 4-byte big-endian length and a msgpack
payload. The server decodes replies with msgspec into a fixed type and bounds their size: it
treats this process as untrusted (the code it runs might have escaped the interpreter).

This module is imported by the server too (for the wire types), so it imports nothing heavy at
module level; smolagents is imported by the fork server (``fork_server.py``) once, and every
worker forked from it has it already: a worker starts in milliseconds.
"""

from __future__ import annotations

import ast
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback

import msgspec

__all__ = [
    "EXTRA_AUTHORIZED_IMPORTS",
    "HEADER",
    "Interpreter",
    "Reply",
    "Request",
    "WorkerConfig",
    "clip",
    "default_authorized_imports",
    "describe_error",
    "main",
    "read_frame",
    "truncation_marker",
]

HEADER = struct.Struct(">I")

#: Added to smolagents' ``BASE_BUILTIN_MODULES`` to make the default list of authorised imports.
#: Left out on purpose, because they hand the code a path to ``os`` that the interpreter's
#: checks do not see: ``operator`` (``attrgetter('_os.open')(random)`` walks attributes in C),
#: ``string`` (``Formatter().get_field('0._os.open', [random], {})`` does it in Python) and
#: ``typing`` (``get_type_hints`` evaluates annotations: ``__import__('os')...`` ran).
EXTRA_AUTHORIZED_IMPORTS = (
    "bisect",
    "collections",
    "copy",
    "datetime",
    "decimal",
    "fractions",
    "functools",
    "heapq",
    "itertools",
    "json",
    "math",
    "random",
    "re",
    "statistics",
    "textwrap",
)

# smolagents' message for a name that is not defined; Python's own exception for it is NameError.
_UNDEFINED_PREFIX = "The variable `"
_UNDEFINED_SUFFIX = "` is not defined."
_CHUNK_CHARS = 1 << 20


class WorkerConfig(msgspec.Struct, frozen=True):
    """What a worker needs to know; ``authorized_imports`` None means the default list."""

    authorized_imports: tuple[str, ...] | None
    max_output_bytes: int
    memory_limit_mb: int | None


class Request(msgspec.Struct, array_like=True, omit_defaults=True):
    """Seed ``random`` (if ``seed`` is set), then run ``code`` (if set).

    ``fork``: instead, copy this worker into a new process serving the socket attached to the
    frame (SCM_RIGHTS); the reply carries the copy's pid.
    """

    code: str | None = None
    seed: int | None = None
    fork: bool = False


class Reply(msgspec.Struct, array_like=True):
    """The outcome of one request; ``out_of_memory`` asks the server for a fresh worker;
    ``pid`` is the copy's, in reply to a fork."""

    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0
    out_of_memory: bool = False
    pid: int | None = None


def default_authorized_imports() -> list[str]:
    """smolagents' base list plus :data:`EXTRA_AUTHORIZED_IMPORTS` (imports smolagents)."""
    from smolagents.utils import BASE_BUILTIN_MODULES  # type: ignore[import-untyped]

    return sorted(set(BASE_BUILTIN_MODULES) | set(EXTRA_AUTHORIZED_IMPORTS))


# Output accounting. Sizes are UTF-8 bytes; unencodable characters (lone surrogates) count as
# the backslash escapes they are sent as.


def utf8_len(text: str) -> int:
    """The size of ``text`` in UTF-8, without holding more than a chunk of it encoded."""
    if text.isascii():
        return len(text)
    if len(text) <= _CHUNK_CHARS:
        return len(text.encode("utf-8", "backslashreplace"))
    return sum(
        len(text[start : start + _CHUNK_CHARS].encode("utf-8", "backslashreplace"))
        for start in range(0, len(text), _CHUNK_CHARS)
    )


def truncation_marker(omitted: int) -> str:
    """What replaces the ``omitted`` bytes cut off the end of a too-long output."""
    return f"\n... [output truncated: {omitted} bytes omitted]"


def _head(text: str, limit: int) -> str:
    """The longest prefix of ``text`` of at most ``limit`` UTF-8 bytes (sent-safe)."""
    if text.isascii():
        return text[:limit]
    # A character is at most 4 bytes (a backslash escape of a surrogate is 6 bytes, 1 char).
    data = text[:limit].encode("utf-8", "backslashreplace")[:limit]
    return data.decode("utf-8", "ignore")


def clip(text: str, limit: int, omitted: int = 0) -> str:
    """``text`` cut to its first ``limit`` bytes, plus a marker when anything was cut.

    ``omitted`` counts bytes already dropped after ``text`` (it then always gets a marker).
    """
    size = utf8_len(text)
    if size <= limit and not omitted:
        return text
    head = _head(text, limit)
    return head + truncation_marker(size - utf8_len(head) + omitted)


class BoundedPrintBuffer:
    """Stands in for smolagents' ``PrintContainer``: keeps the first ``cap`` bytes printed and
    counts the rest, so a print of 100 MB costs 64 KiB of buffer (and no quadratic copying)."""

    cap = 64 * 1024

    def __init__(self) -> None:
        self._chunks: list[str] = []
        self._size = 0
        self.omitted = 0

    def append(self, text: str) -> BoundedPrintBuffer:
        size = utf8_len(text)
        if self.omitted:  # full: keep counting, never keep a later piece after a dropped one
            self.omitted += size
            return self
        room = self.cap - self._size
        if size <= room:
            self._chunks.append(text)
            self._size += size
            return self
        head = _head(text, room) if room > 0 else ""
        if head:
            self._chunks.append(head)
            self._size += utf8_len(head)
        self.omitted += size - utf8_len(head)
        return self

    def __iadd__(self, other: object) -> BoundedPrintBuffer:
        return self.append(str(other))

    @property
    def value(self) -> str:
        if len(self._chunks) > 1:
            self._chunks = ["".join(self._chunks)]
        return self._chunks[0] if self._chunks else ""

    @value.setter
    def value(self, text: str) -> None:
        # smolagents assigns its own (here: no-op) truncation of str(self) back to .value.
        self._chunks = [text]
        self._size = utf8_len(text)

    def __str__(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"BoundedPrintBuffer({self.value!r}, omitted={self.omitted})"

    def __len__(self) -> int:
        return len(self.value)


class Interpreter:
    """One episode's smolagents ``LocalPythonExecutor`` and the rules that turn its results
    into a :class:`Reply` (documented in the env's README)."""

    def __init__(self, config: WorkerConfig) -> None:
        from smolagents.local_python_executor import (  # type: ignore[import-untyped]
            LocalPythonExecutor,
        )

        imports = list(config.authorized_imports or default_authorized_imports())
        self.limit = config.max_output_bytes
        self.executor = LocalPythonExecutor(
            additional_authorized_imports=imports,
            max_print_outputs_length=sys.maxsize,  # the print buffer bounds the output
            timeout_seconds=None,  # run on this thread; the server enforces the time limit
        )
        # The configured list is the whole list: smolagents would add its base list to it.
        self.executor.authorized_imports = imports
        self.executor.send_tools({})  # print, len, range, ...: as a CodeAgent sets it up

    def run(self, code: str) -> Reply:
        executor = self.executor
        # Fresh buffer, so that a syntax error (raised before smolagents makes its own) does not
        # report the previous step's prints.
        executor.state["_print_outputs"] = BoundedPrintBuffer()
        try:
            result = executor(code)
            shown = ""
            if result.output is not None and _ends_with_expression(code):
                shown = repr(result.output) + "\n"
        except BaseException as exc:  # SystemExit and KeyboardInterrupt are errors of the code
            out_of_memory = _caused_by(exc, MemoryError)
            if out_of_memory:
                prints = executor.state.get("_print_outputs")
                executor.state.clear()  # free what the code holds before formatting
                executor.state["_print_outputs"] = prints
            return Reply(
                stdout=self._stdout(""),
                stderr=clip(_safe_describe(exc) + "\n", self.limit),
                exit_code=1,
                out_of_memory=out_of_memory,
            )
        return Reply(stdout=self._stdout(shown))

    def _stdout(self, shown: str) -> str:
        prints = self.executor.state.get("_print_outputs")
        if not isinstance(prints, BoundedPrintBuffer):
            return clip(str(prints or "") + shown, self.limit)
        if prints.omitted:
            return prints.value + truncation_marker(prints.omitted + utf8_len(shown))
        return clip(prints.value + shown, self.limit)


def _ends_with_expression(code: str) -> bool:
    body = ast.parse(code).body
    return bool(body) and isinstance(body[-1], ast.Expr)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _safe_describe(exc: BaseException) -> str:
    try:
        return describe_error(exc)
    except Exception:  # the exception's own __str__ failed
        return f"{type(exc).__name__}: <the exception's message could not be computed>"


def describe_error(exc: BaseException) -> str:
    """The error line: smolagents' own message for its ``InterpreterError`` (it names the
    failing statement, the exception type and message), else Python's ``Type: message``.

    One relabelling: smolagents reports an undefined name as ``InterpreterError: The variable
    `x` is not defined.``; that is shown as ``NameError: ...``, the type Python would raise.
    """
    from smolagents.local_python_executor import InterpreterError

    if not isinstance(exc, InterpreterError):
        return "".join(traceback.format_exception_only(type(exc), exc)).rstrip("\n")
    message = str(exc)
    root = exc.__context__
    if isinstance(root, InterpreterError):
        detail = str(root)
        suffix = f"InterpreterError: {detail}"
        if (
            detail.startswith(_UNDEFINED_PREFIX)
            and detail.endswith(_UNDEFINED_SUFFIX)
            and message.endswith(suffix)
        ):
            message = message[: -len(suffix)] + f"NameError: {detail}"
    return message


# The process.


def main(sock: socket.socket, config: WorkerConfig, parent_pid: int | None = None) -> None:
    """The worker process (forked by the fork server, whose pid is ``parent_pid``): serve
    requests on ``sock`` until the server closes it."""
    _die_with_server(sock, parent_pid)
    _apply_limits(config)
    from smolagents import local_python_executor  # type: ignore[import-untyped]

    BoundedPrintBuffer.cap = config.max_output_bytes
    # smolagents makes a new PrintContainer() per run; make it a bounded one.
    local_python_executor.PrintContainer = BoundedPrintBuffer
    sock.setblocking(True)
    interpreter = Interpreter(config)
    decoder = msgspec.msgpack.Decoder(Request)
    encoder = msgspec.msgpack.Encoder()
    while True:
        frame, fds = read_frame(sock)
        if frame is None:
            return  # the server closed its end
        request = decoder.decode(frame)
        if request.fork:
            reply, copy_socket = _fork(fds)
            if copy_socket is not None:  # this process is the copy: serve its own session
                sock.close()
                sock = copy_socket
                _become_copy(sock, parent_pid)
                continue
        else:
            _close_all(fds)  # only a fork request carries a socket
            try:
                reply = _serve(interpreter, request)
            except MemoryError:
                interpreter.executor.state.clear()
                reply = Reply(stderr="MemoryError\n", exit_code=1, out_of_memory=True)
        try:
            sock.sendall(_encode(encoder, reply))
        except OSError:
            return  # the server is gone


def _serve(interpreter: Interpreter, request: Request) -> Reply:
    if request.seed is not None:
        import random

        random.seed(request.seed)
    if request.code is None:
        return Reply()
    return interpreter.run(request.code)


def _encode(encoder: msgspec.msgpack.Encoder, reply: Reply) -> bytes:
    try:
        payload = encoder.encode(reply)
    except UnicodeEncodeError:  # lone surrogates: send them as backslash escapes
        fields = {name: _sendable(getattr(reply, name)) for name in ("stdout", "stderr")}
        payload = encoder.encode(msgspec.structs.replace(reply, **fields))
    return HEADER.pack(len(payload)) + payload


def _sendable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def read_frame(
    sock: socket.socket, max_fds: int = 1, max_size: int | None = None
) -> tuple[bytes | None, list[int]]:
    """One frame and the fds attached to it (at most ``max_fds``); (None, []) at end of file.

    Raises:
        ValueError: the frame is larger than ``max_size``.
    """
    header, fds = b"", []
    while len(header) < HEADER.size:
        data, received, _, _ = socket.recv_fds(sock, HEADER.size - len(header), max_fds)
        fds += received
        if not data:
            _close_all(fds)
            return None, []
        header += data
    (size,) = HEADER.unpack(header)
    if max_size is not None and size > max_size:
        _close_all(fds)
        raise ValueError(f"frame of {size} bytes")
    body = _read_exactly(sock, size)
    if body is None:
        _close_all(fds)
        return None, []
    return body, fds


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = sock.recv_into(view[received:])
        if count == 0:
            return None
        received += count
    return bytes(buffer)


def _fork(fds: list[int]) -> tuple[Reply, socket.socket | None]:
    """Copy this process (interpreter, variables, imports: copy-on-write) for a forked session.

    The copy must outlive this worker (its session may end first), so it is made a child of the
    fork server, not of this worker: on Linux in one step, as a sibling (:func:`_fork_sibling`);
    elsewhere as a grandchild whose parent exits at once, so that the fork server (a child
    subreaper) inherits it. Returns the reply for the server in this worker, and
    ``(Reply(), socket)`` in the copy, which then serves the socket that came with the request.
    """
    if len(fds) != 1:
        _close_all(fds)
        return Reply(stderr=f"a fork request needs 1 socket, got {len(fds)}\n", exit_code=1), None
    import random

    # A fork re-seeds `random` in the child (an os.register_at_fork hook); a copy of the
    # session keeps its generator's state, as it keeps everything else.
    generator = random.getstate()
    try:
        pid = _fork_sibling()
    except OSError as exc:
        os.close(fds[0])
        return Reply(stderr=f"the interpreter could not be forked: {exc}\n", exit_code=1), None
    if pid is None:
        pid = _fork_grandchild()
    if pid == 0:
        random.setstate(generator)
        return Reply(), socket.socket(fileno=fds[0])
    os.close(fds[0])
    if pid < 0:
        return Reply(stderr="the interpreter could not be forked\n", exit_code=1), None
    return Reply(pid=pid), None


_CLONE_PARENT = 0x00008000
_SYS_CLONE = {"x86_64": 56, "aarch64": 220}


def _fork_sibling() -> int | None:
    """``fork()`` with ``CLONE_PARENT``: the copy's parent is this worker's (the fork server).

    Half the work of a double fork (one page-table copy, no intermediate process to tear down),
    which is most of a fork's latency for a worker holding 100 MB. Python has no binding for
    it, so this is the raw ``clone`` syscall, made the way ``os.fork`` makes ``fork``: with the
    GIL held throughout (``PyDLL`` does not release it) between ``PyOS_BeforeFork`` and
    ``PyOS_AfterFork_*`` (locks reset, ``os.register_at_fork`` hooks run). glibc's own fork
    handlers do not run; that is safe here because the only other thread (the watchdog) only
    ever sits in ``poll``, holding no libc lock. Returns the pid (0 in the copy), or None where
    unavailable (not Linux on x86_64/aarch64).
    """
    import platform

    number = _SYS_CLONE.get(platform.machine())
    if not sys.platform.startswith("linux") or number is None:
        return None
    import ctypes

    libc = ctypes.PyDLL(None, use_errno=True)
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    pid = int(libc.syscall(number, _CLONE_PARENT | signal.SIGCHLD, 0, 0, 0, 0))
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))
    return pid


def _fork_grandchild() -> int:
    """A double fork: the copy's pid (0 in the copy, -1 on failure)."""
    pid_read, pid_write = os.pipe()
    child = os.fork()
    if child == 0:  # the intermediate child: fork the copy, report its pid, exit
        try:
            grandchild = os.fork()
        except BaseException:
            os._exit(1)
        if grandchild == 0:
            os.close(pid_read)
            os.close(pid_write)
            return 0
        try:
            os.write(pid_write, grandchild.to_bytes(4, "big"))
        finally:
            os._exit(0)
    os.close(pid_write)
    try:
        data = os.read(pid_read, 4)
    finally:
        os.close(pid_read)
        os.waitpid(child, 0)
    return int.from_bytes(data, "big") if len(data) == 4 else -1


def _become_copy(sock: socket.socket, parent_pid: int | None) -> None:
    """In a fork's copy: wait to be adopted by the fork server, then watch the new socket as
    :func:`main` watches the first (the watchdog thread did not survive the fork)."""
    deadline = time.monotonic() + 5.0
    # After a double fork, until the intermediate child has exited the copy's parent is that
    # child, and the parent-death signal set now would fire as soon as it does.
    while os.getppid() != parent_pid and time.monotonic() < deadline:
        time.sleep(0.0002)
    sock.setblocking(True)
    _die_with_server(sock, parent_pid)


def _die_with_server(sock: socket.socket, parent_pid: int | None) -> None:
    """Make sure this process ends when the server does, even mid-way through a step.

    A thread exits the process as soon as the server's end of the socket closes (the server
    exited, crashed or dropped this worker) while the main thread runs code. Code holding the
    GIL in C (``sum(range(10**15))``) would starve that thread, so on Linux the process also
    gets SIGKILL when its parent, the fork server, exits, which it does when the server is gone.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(0)  # the fork server died before the line above took effect
    hangup = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR
    threading.Thread(
        target=_exit_on_hangup, args=(sock.fileno(), hangup), name="watchdog", daemon=True
    ).start()


def _exit_on_hangup(fd: int, hangup: int) -> None:
    poller = select.poll()
    poller.register(fd, hangup)
    while True:
        for _, events in poller.poll():
            if events & (hangup | select.POLLNVAL):
                os._exit(0)


def _apply_limits(config: WorkerConfig) -> None:
    try:
        import resource
    except ImportError:  # not on POSIX: no limits
        return
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if config.memory_limit_mb:
        limit = config.memory_limit_mb * 1024 * 1024
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        # Soft and hard: the code cannot raise it again.
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
