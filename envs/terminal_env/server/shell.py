"""One persistent bash per session, driven over pipes, with a pty as its controlling terminal.

The shell is an interactive ``bash`` (``-i``, no rc files, no line editing) in a session of its
own whose controlling terminal is a pty: that gives it job control, so every foreground job
runs in a process group of its own, and the terminal's foreground group is always the job to
stop on a time-out (``tcgetpgrp``), the shell's own group while it runs a builtin loop. The
pty carries no data: commands arrive on the shell's stdin (a pipe), one line each; each
command's stdin is ``/dev/null`` and its stdout and stderr are two FIFOs made for that command
alone, read by the server as the command writes; the shell reports each command's status and
its directory on a control pipe, as NUL-terminated records:

- ``D <seq> <status> <cwd>``: command ``seq`` ended;
- ``S <seq>``: the shell read the sync line ``seq`` (it is back at its prompt);
- ``B <seq> <pid>``: background job ``seq`` started as ``pid`` (its process group);
- ``X <pid> <status>``: background job ``pid`` ended.

A command is run as ``{ eval "$cmd"; }`` at the shell's top level, so ``cd``, variables,
functions, aliases and options carry over, exactly as typed into a terminal. Past its
time-out the server does what a terminal user does: Ctrl-C (SIGINT to the foreground group,
or to the shell while a builtin runs), then SIGKILL to the foreground group, until the shell
answers a sync line; a shell that does not (it ignores SIGINT and loops) is killed and
replaced, and the caller is told its state was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import os
import re
import shutil
import signal
import subprocess
import termios
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from openenv import procfs

__all__ = ["Background", "Output", "Result", "Shell", "ShellError", "quote", "sweep"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_UNSAFE = re.compile(r"[^\x20-\x26\x28-\x5b\x5d-\x7e]+")
_READ_CHUNK = 1 << 20
_READS_PER_WAKE = 8  # then yield the loop: one flooding command must not starve the others
_PIPE_SIZE = 1 << 20
_SYNC_ROUNDS = 8
_STOP_GRACE_S = 0.05  # doubling each round, to 1 s: ~4.5 s in all before the shell is replaced
_MAX_RECORD = 1 << 16
_SEND_TIMEOUT_S = 5.0


class ShellError(Exception):
    """The shell could not run the request (it died, or broke its protocol)."""


def quote(text: str) -> str:
    """``text`` as one bash word (ANSI-C quoting: every byte survives, newlines included).

    Raises:
        ValueError: ``text`` holds a NUL, which no bash string can.
    """
    if "\0" in text:
        raise ValueError("a NUL character cannot be passed to bash")
    escaped = _UNSAFE.sub(
        lambda m: "".join(f"\\x{byte:02x}" for byte in m.group().encode("utf-8", "replace")),
        text,
    )
    return f"$'{escaped}'"


class Output:
    """One stream read from a FIFO: its first ``cap`` bytes kept, the rest counted."""

    def __init__(self, path: Path, cap: int) -> None:
        self.cap = cap
        self.data = bytearray()
        self.dropped = 0
        self.path = path
        os.mkfifo(path, 0o600)
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        # Our own writer: the reader never sees end-of-file, however the command's writers come
        # and go (background jobs may keep theirs); the end is the shell's status record.
        self._keep = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.fd, self.read)

    def read(self) -> None:
        for _ in range(_READS_PER_WAKE):
            try:
                chunk = os.read(self.fd, _READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                return
            if not chunk:
                return
            room = self.cap - len(self.data)
            if room > 0:
                self.data += chunk[:room]
            self.dropped += max(0, len(chunk) - max(room, 0))

    def drain(self) -> None:
        """Read what is in the pipe now (everything written before the status record)."""
        before = -1
        while before != len(self.data) + self.dropped:
            before = len(self.data) + self.dropped
            self.read()

    def take(self) -> tuple[bytes, bool]:
        """The output kept since the last take, and whether some was dropped."""
        data, truncated = bytes(self.data), self.dropped > 0
        self.data.clear()
        self.dropped = 0
        return data, truncated

    def close(self) -> None:
        if self.fd < 0:
            return
        self._loop.remove_reader(self.fd)
        os.close(self.fd)
        os.close(self._keep)
        self.fd = -1
        with contextlib.suppress(OSError):
            self.path.unlink()


@dataclass
class Result:
    """One command's outcome."""

    stdout: bytes
    stderr: bytes
    exit_code: int | None
    truncated: bool
    timed_out: bool = False
    cwd: str = ""
    restarted: str = ""  # why the shell was replaced during the command (its state is lost)


@dataclass
class Background:
    """A job started by :meth:`Shell.start_background`: its process group and its output."""

    handle: int
    pid: int
    stdout: Output
    stderr: Output
    exit_code: int | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    pidfd: int = -1

    @property
    def running(self) -> bool:
        return not self.ended.is_set()


class Shell:
    """A persistent interactive bash (see the module docstring).

    Args:
        workspace: its starting directory and ``HOME``.
        rundir: a private directory for the FIFOs (outside the workspace).
        env: the shell's environment.
        max_output_bytes: each stream of a command keeps this many bytes.
        max_procs: RLIMIT_NPROC of the shell and what it starts (None: unchanged).
    """

    def __init__(
        self,
        workspace: Path,
        rundir: Path,
        env: Mapping[str, str],
        max_output_bytes: int,
        max_procs: int | None = None,
    ) -> None:
        self.workspace = workspace
        self.rundir = rundir
        self.env = dict(env)
        self.cap = max_output_bytes
        self.max_procs = max_procs
        self.cwd = str(workspace)
        self.process: subprocess.Popen[bytes] | None = None
        self.background: dict[int, Background] = {}
        self._seq = 0
        self._waiting: dict[str, asyncio.Future[list[str]]] = {}
        self._by_pid: dict[int, Background] = {}
        self._exits: dict[int, int] = {}  # X records that came before the B record
        self._buffer = b""
        self._stdin = -1
        self._ctl = -1
        self._ctl_write = -1
        self._pidfd = -1
        self._master = -1
        self._dead: asyncio.Future[int] | None = None

    # Life cycle.

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def alive(self) -> bool:
        return self._dead is not None and not self._dead.done()

    @property
    def exit_status(self) -> int | None:
        """How the shell ended (128 + N for signal N); None while it runs."""
        dead = self._dead
        return dead.result() if dead is not None and dead.done() else None

    def start(self) -> None:
        """Spawn the shell (it is ready for commands at once: they queue on its stdin)."""
        loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        stdin_read, stdin_write = os.pipe2(os.O_CLOEXEC)
        ctl_read, ctl_write = os.pipe2(os.O_CLOEXEC)
        os.set_inheritable(ctl_write, True)
        max_procs = self.max_procs

        def become_terminal_session() -> None:  # runs in the child, between fork and exec
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            _die_with_parent()
            # The shell and its jobs go first on OOM. The server is non-dumpable, and so is
            # this child until exec: its /proc files are root's until it says otherwise.
            with contextlib.suppress(AttributeError):
                _LIBC.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
            with contextlib.suppress(OSError):
                Path("/proc/self/oom_score_adj").write_text("500")
            if max_procs is not None:
                import resource

                resource.setrlimit(resource.RLIMIT_NPROC, (max_procs, max_procs))

        try:
            self.process = subprocess.Popen(
                ["bash", "--norc", "--noprofile", "--noediting", "-i"],
                stdin=stdin_read,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=self.workspace,
                env=self.env,
                pass_fds=(ctl_write,),
                preexec_fn=become_terminal_session,
            )
        finally:
            os.close(stdin_read)
            os.close(slave)
        self._stdin, self._ctl, self._ctl_write, self._master = (
            stdin_write,
            ctl_read,
            ctl_write,
            master,
        )
        os.set_blocking(stdin_write, False)
        # Our copy of the write end is closed: only the shell (and its background wrappers)
        # write records.
        os.close(ctl_write)
        os.set_blocking(ctl_read, False)
        self._dead = loop.create_future()
        self._pidfd = os.pidfd_open(self.process.pid)
        loop.add_reader(self._pidfd, self._on_exit)
        loop.add_reader(self._ctl, self._on_records)
        # What is written to the terminal (/dev/tty) is read and dropped: unread, it would
        # fill the pty's buffer and block the writer.
        os.set_blocking(master, False)
        loop.add_reader(master, self._discard_terminal)
        fd = self._ctl_write
        # History off (`!` is literal), no prompts, and a shell that outlives the stray EOF an
        # interrupted read reports (a real one, ten in a row, ends it).
        self._send(
            f"set +o history +H; PS1=''; PS2=''; PS0=''; PROMPT_COMMAND=''; "
            f"IGNOREEOF=10; __oe_fd={fd}\n"
        )

    def _on_exit(self) -> None:
        assert self.process is not None and self._dead is not None
        # Not reaped yet (WNOWAIT): while the zombie keeps its pid, no other process can get
        # that number as its session id, so kill() can sweep the session safely.
        try:
            info = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            info = None
        if info is None:
            return
        exited = info.si_code == os.CLD_EXITED
        status = info.si_status if exited else -info.si_status
        asyncio.get_running_loop().remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        if not self._dead.done():
            self._dead.set_result(128 - status if status < 0 else status)
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ShellError("the shell exited"))

    def _discard_terminal(self) -> None:
        for _ in range(_READS_PER_WAKE):
            try:
                if not os.read(self._master, _READ_CHUNK):
                    break
            except OSError:  # EAGAIN, or EIO once no process has the terminal open
                break

    def _on_records(self) -> None:
        try:
            chunk = os.read(self._ctl, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            asyncio.get_running_loop().remove_reader(self._ctl)
            return
        self._buffer += chunk
        *records, self._buffer = self._buffer.split(b"\0")
        if len(self._buffer) > _MAX_RECORD:
            self._buffer = b""  # not ours: a job wrote junk on the control pipe
        for record in records:
            self._on_record(record.decode("utf-8", "surrogateescape"))

    def _on_record(self, record: str) -> None:
        kind, _, rest = record.partition(" ")
        if kind in ("D", "S", "B"):
            seq, _, rest = rest.partition(" ")
            future = self._waiting.get(f"{kind}{seq}")
            if future is not None and not future.done():
                future.set_result(rest.split(" ", 1))
        elif kind == "X":
            pid, _, status = rest.partition(" ")
            with contextlib.suppress(ValueError):
                job = self._by_pid.get(int(pid))
                if job is None:
                    self._exits[int(pid)] = int(status)
                elif job.exit_code is None:
                    job.exit_code = int(status)

    def _send(self, line: str) -> None:
        data = line.encode("utf-8", "surrogateescape")
        view = memoryview(data)
        deadline = time.monotonic() + _SEND_TIMEOUT_S
        while view:
            try:
                written = os.write(self._stdin, view)
            except BlockingIOError:
                # A line longer than the pipe: the shell reads it as fast as we write.
                if time.monotonic() > deadline:
                    raise ShellError("the shell stopped reading its input") from None
                time.sleep(0.0005)
                continue
            except OSError as exc:
                raise ShellError(f"the shell does not read its input ({exc})") from exc
            view = view[written:]

    def _expect(self, key: str) -> asyncio.Future[list[str]]:
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        return future

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    # Commands.

    def _prefix(
        self, command: str, cwd: str | None, env: Mapping[str, str] | None
    ) -> tuple[str, str]:
        """``eval`` of ``command``, in ``cwd`` and with ``env`` added (both for it alone)."""
        assigns = ""
        for key, value in (env or {}).items():
            if not _NAME.match(key):
                raise ValueError(f"not a variable name: {key!r}")
            assigns += f"{key}={quote(value)} "
        run = f'{assigns}eval "$__oe_c"'
        if cwd is not None:
            run = f"builtin cd -- {quote(cwd)} && {run}"
        return f"__oe_c={quote(command)}; ", run

    async def run(
        self,
        command: str,
        timeout_s: float,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Result:
        """Run ``command`` in the shell; see the module docstring."""
        set_command, run = self._prefix(command, cwd, env)
        if not self.alive:
            raise ShellError("the shell is not running")
        seq = self._next()
        out = Output(self.rundir / f"o{seq}", self.cap)
        err = Output(self.rundir / f"e{seq}", self.cap)
        done = self._expect(f"D{seq}")
        keep_dir = "__oe_d=$PWD; " if cwd is not None else ""
        back = '; builtin cd -- "$__oe_d"' if cwd is not None else ""
        fd = self._ctl_write
        timed_out = False
        restarted = ""
        exit_code: int | None = None
        try:
            try:
                self._send(
                    f"{set_command}{keep_dir}{{ {run}; }} {fd}>&- </dev/null >{out.path} "
                    f"2>{err.path}; __oe_s=$?{back}; "
                    f'builtin printf \'D {seq} %d %s\\0\' "$__oe_s" "$PWD" >&{fd}\n'
                )
                async with asyncio.timeout(timeout_s):
                    status, self.cwd = await done
                exit_code = int(status)
            except TimeoutError:
                timed_out, exit_code = True, 124
                if not await self._interrupt():
                    restarted = (
                        "the command did not stop when interrupted, so the shell was killed "
                        "and replaced"
                    )
                    await self.kill()
            except ShellError:
                assert self._dead is not None
                code = await self._dead
                exit_code = code
                restarted = f"the shell exited (status {code})"
            out.drain()
            err.drain()
            stdout, cut_out = out.take()
            stderr, cut_err = err.take()
        finally:
            self._waiting.pop(f"D{seq}", None)
            out.close()
            err.close()
        return Result(stdout, stderr, exit_code, cut_out or cut_err, timed_out, self.cwd, restarted)

    async def _interrupt(self) -> bool:
        """Stop the running command as a terminal user would; whether the shell came back."""
        assert self.process is not None
        shell = self.process.pid
        for attempt in range(_SYNC_ROUNDS):
            if not self.alive:
                return False
            try:
                foreground = os.tcgetpgrp(self._master)
            except OSError:
                foreground = shell
            signum = signal.SIGINT if attempt == 0 else signal.SIGKILL
            with contextlib.suppress(OSError):
                if foreground != shell:
                    os.killpg(foreground, signum)
                else:
                    os.kill(shell, signal.SIGINT)
            if await self.sync(min(_STOP_GRACE_S * 2**attempt, 1.0)):
                return True
        return False

    async def sync(self, timeout_s: float) -> bool:
        """Whether the shell reads a new line within ``timeout_s`` (is back at its prompt)."""
        seq = self._next()
        synced = self._expect(f"S{seq}")
        try:
            self._send(f"builtin printf 'S {seq}\\0' >&{self._ctl_write}\n")
            async with asyncio.timeout(timeout_s):
                await synced
            return True
        except (TimeoutError, ShellError):
            return False
        finally:
            self._waiting.pop(f"S{seq}", None)

    # Background jobs.

    async def start_background(
        self, command: str, cwd: str | None = None, env: Mapping[str, str] | None = None
    ) -> Background:
        set_command, run = self._prefix(command, cwd, env)
        if not self.alive:
            raise ShellError("the shell is not running")
        seq = self._next()
        out = Output(self.rundir / f"bo{seq}", self.cap)
        err = Output(self.rundir / f"be{seq}", self.cap)
        started = self._expect(f"B{seq}")
        fd = self._ctl_write
        self._send(
            f"{set_command}{{ ( {run} ) {fd}>&- </dev/null >{out.path} 2>{err.path}; "
            f'builtin printf \'X %d %d\\0\' "$BASHPID" "$?" >&{fd}; }} 2>/dev/null & '
            f"builtin printf 'B {seq} %d\\0' \"$!\" >&{fd}; builtin disown $! 2>/dev/null\n"
        )
        try:
            async with asyncio.timeout(10):
                (pid_text,) = await started
        except BaseException:
            out.close()
            err.close()
            raise
        finally:
            self._waiting.pop(f"B{seq}", None)
        pid = int(pid_text)
        job = Background(seq, pid, out, err)
        self.background[seq] = job
        self._by_pid[pid] = job
        if pid in self._exits:
            job.exit_code = self._exits.pop(pid)
        try:
            job.pidfd = os.pidfd_open(pid)
        except OSError:
            self._ended(job)  # gone already
        else:
            asyncio.get_running_loop().add_reader(job.pidfd, self._ended, job)
        return job

    def _ended(self, job: Background) -> None:
        self._on_records()  # its exit record may be waiting behind the exit itself
        if job.pidfd >= 0:
            asyncio.get_running_loop().remove_reader(job.pidfd)
            os.close(job.pidfd)
            job.pidfd = -1
        if job.exit_code is None:
            job.exit_code = 128 + signal.SIGKILL  # killed before it could report
        job.stdout.drain()
        job.stderr.drain()
        job.ended.set()

    def kill_job(self, job: Background) -> None:
        with contextlib.suppress(OSError):
            os.killpg(job.pid, signal.SIGKILL)

    def forget(self, job: Background) -> None:
        """Close an ended job's streams."""
        self.background.pop(job.handle, None)
        self._by_pid.pop(job.pid, None)
        job.stdout.close()
        job.stderr.close()

    # The end.

    async def kill(self) -> None:
        """Kill the shell and everything it started (its session); close its pipes."""
        loop = asyncio.get_running_loop()
        if self.process is not None:
            sweep(self.process.pid, self.env.get(TAG_VAR))
            if self._dead is not None and not self._dead.done():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        await asyncio.shield(self._dead)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(0.5)
        for job in list(self.background.values()):
            if job.pidfd >= 0:
                self._ended(job)
            self.forget(job)
        if self._master >= 0:
            loop.remove_reader(self._master)
        for fd in (self._stdin, self._master):
            if fd >= 0:
                os.close(fd)
        if self._ctl >= 0:
            loop.remove_reader(self._ctl)
            os.close(self._ctl)
        if self._pidfd >= 0:
            loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
        self._stdin = self._master = self._ctl = self._pidfd = -1
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ShellError("the shell was killed"))


TAG_VAR = "OPENENV_TERMINAL_SESSION"


def sweep(session: int, tag: str | None, rounds: int = 50) -> None:
    """Kill every process of the session ``session`` and every process whose environment
    carries ``TAG_VAR=tag`` (which catches those that left the session with ``setsid``),
    until none is left. Each round stops them all first, then kills them: a fork bomb cannot
    fork while it is being killed."""
    marker = f"{TAG_VAR}={tag}".encode() if tag else None
    me = os.getpid()
    uid = os.getuid()
    for _ in range(rounds):
        found = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            pid = int(entry.name)
            fields = procfs.stat_fields(pid)
            if fields is None or fields[0] in ("Z", "X"):
                continue
            ours = int(fields[3]) == session
            if not ours and marker is not None:
                try:
                    if entry.stat().st_uid != uid:
                        continue
                    with open(f"/proc/{pid}/environ", "rb") as environ:
                        ours = marker in environ.read().split(b"\0")
                except OSError:
                    continue
            if ours:
                found.append(pid)
        if not found:
            return
        for signum in (signal.SIGSTOP, signal.SIGKILL):
            for pid in found:
                with contextlib.suppress(OSError):
                    os.kill(pid, signum)


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here: nothing may be imported after fork


def _die_with_parent() -> None:
    """SIGKILL this process when the server dies (Linux): a shell must not outlive it."""
    with contextlib.suppress(AttributeError):
        _LIBC.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def remove_tree(path: Path) -> None:
    """Remove ``path`` even where the agent took away permissions inside it."""

    def allow(function: Callable[..., object], name: str, _: object) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(name), 0o700)
            os.chmod(name, 0o700)
        with contextlib.suppress(OSError):
            function(name)

    shutil.rmtree(path, onerror=allow)
