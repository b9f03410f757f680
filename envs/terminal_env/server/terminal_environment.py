"""The terminal environment: a persistent bash per session, files, background jobs and tasks.

File operations and clean-up run on the server's event loop, with no thread: on a
local tmpfs they take microseconds, and under a fork bomb (the container's pids limit reached)
no new thread could start.

Each session owns a directory under the server's root (``$OPENENV_TERMINAL_ROOT``, default
``<tmp>/openenv-terminal``) holding its ``workspace`` (the shell's start directory and
``HOME``) and a private ``run`` directory (its pipes, and a task's tests while they run).
``reset`` kills everything the last episode started (the shell's session, and anything that
left it but still carries the session's tag in its environment), empties the workspace and
starts a new shell; with ``task=...`` it then lays out the task (see ``tasks.py``).

The env is not a sandbox: the container is (see the README). ``fork`` answers
``not_supported``: a session is a live process tree (the shell, its jobs, their pipes), which
cannot be copied faithfully; copying the workspace alone would silently drop the shell's
variables, functions and running jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

from envs.terminal_env.models import (
    DirEntry,
    Evaluate,
    Exec,
    Kill,
    ListDir,
    Poll,
    ReadFile,
    Start,
    TerminalAction,
    TerminalObservation,
    TerminalState,
    TestResult,
    WriteFile,
)
from envs.terminal_env.server.scripts import run_script
from envs.terminal_env.server.shell import (
    TAG_VAR,
    Background,
    Shell,
    ShellError,
    remove_tree,
    sweep,
)
from envs.terminal_env.server.tasks import TASKS_DIR, Task, load_task
from openenv.server import Environment, tool

__all__ = ["DEFAULT_MAX_OUTPUT_BYTES", "TerminalEnvironment", "protect_server"]

DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024
MAX_READ_BYTES = 8 << 20
MAX_ENTRIES = 10_000
MAX_TIMEOUT_S = 3600.0
MAX_WAIT_S = 60.0
MAX_BACKGROUND = 64  # live (or unreported) background processes per session
ROOT_VAR = "OPENENV_TERMINAL_ROOT"
MAX_OUTPUT_VAR = "OPENENV_TERMINAL_MAX_OUTPUT_BYTES"
MAX_PROCS_VAR = "OPENENV_TERMINAL_MAX_PROCS"
TASKS_VAR = "OPENENV_TERMINAL_TASKS"
_KILL_WAIT_S = 5.0
_SHELL_LOST = "directory, variables and functions are back to their defaults"
# Never passed to the shell: the server's own settings (its token first of all), and what
# would make bash read files of the caller's at start-up.
_HIDDEN_PREFIXES = ("OPENENV_",)
_HIDDEN = {"BASH_ENV", "ENV", "PROMPT_COMMAND", "PS1", "PS2", "PS4", "HISTFILE", "CDPATH"}


def protect_server() -> None:
    """Make this process non-dumpable: code in the shell runs as the same user, and would
    otherwise read ``/proc/<server>/environ`` (the token) and ``/proc/<server>/mem``."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0


def _int_setting(value: int | None, variable: str, default: int | None) -> int | None:
    if value is not None:
        return value
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{variable}={raw!r} is not an integer") from None


class TerminalEnvironment(Environment[TerminalAction, TerminalObservation, TerminalState]):
    """A persistent bash per session (see the module docstring and the README).

    Args:
        max_output_bytes: each output stream of an operation keeps this many bytes;
            default ``$OPENENV_TERMINAL_MAX_OUTPUT_BYTES``, else 64 KiB.
        max_procs: RLIMIT_NPROC of the shell and everything it starts (a fork bomb stops
            there, leaving the server room to work); default ``$OPENENV_TERMINAL_MAX_PROCS``,
            else none (the image sets it).
        root: where sessions get their directories; default ``$OPENENV_TERMINAL_ROOT``, else
            ``<tmp>/openenv-terminal``.
        tasks_dir: the tasks ``reset(task=name)`` finds; default ``$OPENENV_TERMINAL_TASKS``,
            else the bundled examples.
    """

    name = "terminal_env"
    runs_code = True  # a shell: serve() wants a token for it on a unix socket
    forkable = False

    def __init__(
        self,
        *,
        max_output_bytes: int | None = None,
        max_procs: int | None = None,
        root: str | os.PathLike[str] | None = None,
        tasks_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        cap = _int_setting(max_output_bytes, MAX_OUTPUT_VAR, DEFAULT_MAX_OUTPUT_BYTES)
        assert cap is not None
        if cap < 1:
            raise ValueError(f"max_output_bytes must be positive, not {cap}")
        self.max_output_bytes = cap
        self.max_procs = _int_setting(max_procs, MAX_PROCS_VAR, None)
        if self.max_procs is not None and self.max_procs < 1:
            raise ValueError(f"max_procs must be positive, not {self.max_procs}")
        default_root = Path(tempfile.gettempdir()) / "openenv-terminal"
        self.root = Path(root or os.environ.get(ROOT_VAR) or default_root)
        self.tasks_dir = Path(tasks_dir or os.environ.get(TASKS_VAR) or TASKS_DIR)
        self._state = TerminalState()
        self._shell: Shell | None = None
        self._session: Path | None = None
        self._task: Task | None = None
        self._tag = ""

    # The episode.

    async def reset(
        self,
        seed: int | None = None,
        episode_id: str | None = None,
        task: Any = None,
        **options: Any,
    ) -> TerminalObservation:
        if options:
            raise ValueError(f"unknown reset options: {', '.join(sorted(options))} (known: task)")
        loaded = load_task(task, self.tasks_dir) if task is not None else None
        await self._teardown()
        self._task = loaded
        shell = await self._new_shell()
        self._state = TerminalState(
            episode_id=episode_id or uuid.uuid4().hex,
            task=loaded.name if loaded else None,
            workspace=str(shell.workspace),
            cwd=shell.cwd,
        )
        observation = TerminalObservation(reward=0.0, cwd=shell.cwd)
        if loaded is not None:
            observation.instruction = loaded.instruction
            for relative, content in loaded.files.items():
                target = shell.workspace / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
            if loaded.setup:
                done = await run_script(
                    ["bash", "-c", loaded.setup],
                    shell.workspace,
                    shell.env,
                    loaded.timeout_s,
                    self.max_output_bytes,
                )
                if done.exit_code != 0:
                    raise RuntimeError(
                        f"the set-up of task {loaded.name!r} failed (exit {done.exit_code}): "
                        f"{done.output.decode('utf-8', 'replace')[-2000:]}"
                    )
        return observation

    async def step(self, action: TerminalAction) -> TerminalObservation:
        self._state.step_count += 1
        started = time.perf_counter()
        op = action.op
        shell = self._shell
        lost = ""
        if shell is not None and not shell.alive:
            # Killed between steps (say by a background job of its own).
            lost = f"the shell had exited (status {shell.exit_status})"
            await self._drop_shell()
            shell = None
        if shell is None:
            shell = await self._new_shell(keep_workspace=True)
        try:
            observation = await self._apply(shell, op)
        except (ValueError, OSError, ShellError) as exc:
            observation = TerminalObservation(exit_code=1, error=_describe(exc))
        if lost:
            note = f"{lost}; a new shell was started: {_SHELL_LOST}"
            observation.error = f"{note}\n{observation.error}" if observation.error else note
            observation.metadata = {**observation.metadata, "shell_restarted": True}
        observation.duration_ms = (time.perf_counter() - started) * 1000
        if not observation.cwd:
            observation.cwd = shell.cwd
        self._state.cwd = shell.cwd
        self._state.handles = sorted(shell.background)
        if observation.reward is None:
            observation.reward = 0.0
        return observation

    async def _apply(self, shell: Shell, op: Any) -> TerminalObservation:
        if isinstance(op, Exec):
            return await self._exec(shell, op)
        if isinstance(op, WriteFile):
            _write(self._path(shell, op.path), op.content, op.mode)
            return TerminalObservation(exit_code=0)
        if isinstance(op, ReadFile):
            if op.max_bytes < 0:
                raise ValueError(f"max_bytes must be >= 0, not {op.max_bytes}")
            limit = min(op.max_bytes, MAX_READ_BYTES)
            data, more = _read(self._path(shell, op.path), limit)
            return TerminalObservation(exit_code=0, data=data, truncated=more)
        if isinstance(op, ListDir):
            entries, more = _list(self._path(shell, op.path))
            return TerminalObservation(exit_code=0, entries=entries, truncated=more)
        if isinstance(op, Start):
            if len(shell.background) >= MAX_BACKGROUND:
                raise ValueError(
                    f"{MAX_BACKGROUND} background processes are running or unreported: Kill "
                    f"some, or Poll those that ended"
                )
            job = await shell.start_background(op.command, op.cwd, op.env)
            return TerminalObservation(handle=job.handle, running=True)
        if isinstance(op, Poll):
            job = self._job(shell, op.handle)
            if op.wait_s > 0 and job.running:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(op.wait_s, MAX_WAIT_S)):
                        await job.ended.wait()
            return self._report(shell, job)
        if isinstance(op, Kill):
            job = self._job(shell, op.handle)
            shell.kill_job(job)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_KILL_WAIT_S):
                    await job.ended.wait()
            return self._report(shell, job)
        if isinstance(op, Evaluate):
            return await self._evaluate()
        raise ValueError(f"unknown operation {type(op).__name__}")

    async def _exec(self, shell: Shell, op: Exec) -> TerminalObservation:
        if not 0 < op.timeout_s <= MAX_TIMEOUT_S:
            raise ValueError(f"timeout_s must be in (0, {MAX_TIMEOUT_S:g}], not {op.timeout_s}")
        result = await shell.run(op.command, op.timeout_s, op.cwd, op.env)
        observation = TerminalObservation(
            stdout=result.stdout.decode("utf-8", "replace"),
            stderr=result.stderr.decode("utf-8", "replace"),
            exit_code=result.exit_code,
            timed_out=result.timed_out,
            truncated=result.truncated,
            cwd=result.cwd,
        )
        if result.restarted:
            await self._drop_shell()
            fresh = await self._new_shell(keep_workspace=True)
            observation.cwd = fresh.cwd
            observation.error = f"{result.restarted}; a new shell was started: {_SHELL_LOST}"
            observation.metadata = {"shell_restarted": True}
        return observation

    def _report(self, shell: Shell, job: Background) -> TerminalObservation:
        stdout, cut_out = job.stdout.take()
        stderr, cut_err = job.stderr.take()
        observation = TerminalObservation(
            stdout=stdout.decode("utf-8", "replace"),
            stderr=stderr.decode("utf-8", "replace"),
            truncated=cut_out or cut_err,
            handle=job.handle,
            running=job.running,
            exit_code=job.exit_code if not job.running else None,
        )
        if not job.running:
            shell.forget(job)  # its last output is out: the handle is done
        return observation

    def _job(self, shell: Shell, handle: int) -> Background:
        job = shell.background.get(handle)
        if job is None:
            known = ", ".join(map(str, sorted(shell.background))) or "none"
            raise ValueError(f"no background process {handle} (running or unreported: {known})")
        return job

    async def _evaluate(self) -> TerminalObservation:
        task = self._task
        if task is None:
            raise ValueError("no task to evaluate: start the episode with reset(task=...)")
        if self._state.evaluated:
            raise ValueError("this episode was evaluated already; reset for another")
        shell = self._shell
        assert shell is not None and self._session is not None
        # The agent's processes end first: none of them may touch the tests while they run.
        workspace, env = shell.workspace, shell.env
        await self._drop_shell()
        tests_dir = self._session / "run" / "tests"
        for relative, content in task.tests.items():
            target = tests_dir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        tests_dir.mkdir(parents=True, exist_ok=True)
        env = {**env, "TESTS_DIR": str(tests_dir)}
        if task.reward == "exit":
            argv = ["bash", "-c", task.test]
        else:
            report = self._session / "run" / "junit.xml"
            argv = [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-c",
                os.devnull,
                f"--rootdir={tests_dir}",
                f"--confcutdir={tests_dir}",
                f"--junitxml={report}",
                str(tests_dir),
            ]
            env["PYTHONPATH"] = str(workspace)
        done = await run_script(argv, workspace, env, task.timeout_s, self.max_output_bytes)
        if task.reward == "exit":
            result = TestResult(passed=int(done.exit_code == 0), total=1)
        else:
            result = _junit(self._session / "run" / "junit.xml")
        self._state.evaluated = True
        remove_tree(tests_dir)
        return TerminalObservation(
            stdout=done.output.decode("utf-8", "replace"),
            exit_code=done.exit_code,
            timed_out=done.timed_out,
            tests=result,
            reward=result.passed / result.total if result.total else 0.0,
            done=True,
        )

    @property
    def state(self) -> TerminalState:
        return self._state

    # The same operations as tools (each call is a step of the episode).

    @tool
    async def exec(
        self, command: str, timeout_s: float = 30.0, cwd: str | None = None
    ) -> TerminalObservation:
        """Run a command in the session's persistent bash shell (cd, variables and functions
        carry over to the next command); returns its stdout, stderr and exit code.

        Args:
            command: bash source, one or more lines.
            timeout_s: past this many seconds the command is stopped (exit code 124).
            cwd: run in this directory instead of the shell's current one (this call only).
        """
        return await self.step(TerminalAction(op=Exec(command, timeout_s, cwd)))

    @tool
    async def read_file(self, path: str, max_bytes: int = 1 << 20) -> str:
        """Read a text file (undecodable bytes are replaced); relative paths start at the
        shell's current directory.

        Args:
            path: the file to read.
            max_bytes: read at most this many bytes (a note marks a cut).
        """
        observation = await self.step(TerminalAction(op=ReadFile(path, max_bytes)))
        if observation.error:
            raise OSError(observation.error)
        text = observation.data.decode("utf-8", "replace")
        return text + (f"\n[cut at {max_bytes} bytes]" if observation.truncated else "")

    @tool
    async def write_file(self, path: str, content: str, mode: int = 0o644) -> str:
        """Write a text file (UTF-8), creating its parent directories; relative paths start
        at the shell's current directory.

        Args:
            path: the file to write (replaced if it exists).
            content: the whole new content.
            mode: its permission bits, e.g. 493 (0o755) for a script.
        """
        data = content.encode()
        observation = await self.step(TerminalAction(op=WriteFile(path, data, mode)))
        if observation.error:
            raise OSError(observation.error)
        return f"wrote {len(data)} bytes to {path}"

    async def close(self) -> None:
        await self._teardown()

    # Sessions.

    def _path(self, shell: Shell, path: str) -> Path:
        if "\0" in path:
            raise ValueError("a path cannot hold a NUL character")
        resolved = Path(shell.cwd) / path  # an absolute path stays as it is
        _refuse_server_files(resolved)
        return resolved

    async def _new_shell(self, keep_workspace: bool = False) -> Shell:
        if not keep_workspace or self._session is None:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o711)
            self._session = Path(tempfile.mkdtemp(prefix="s-", dir=self.root))
            (self._session / "workspace").mkdir()
            (self._session / "run").mkdir(mode=0o700)
            self._tag = uuid.uuid4().hex
        workspace = self._session / "workspace"
        shell = Shell(
            workspace,
            self._session / "run",
            _shell_env(workspace, self._tag),
            self.max_output_bytes,
            self.max_procs,
        )
        try:
            shell.start()
        except BlockingIOError as exc:
            raise RuntimeError(
                "cannot start a shell: no process slot is free (the container's pids limit "
                "is reached; a session may be running a fork bomb, which its reset ends)"
            ) from exc
        self._shell = shell
        return shell

    async def _drop_shell(self) -> None:
        shell, self._shell = self._shell, None
        if shell is not None:
            await shell.kill()
        if self._tag:
            sweep(-1, self._tag)  # jobs that left the session with setsid

    async def _teardown(self) -> None:
        await self._drop_shell()
        session, self._session = self._session, None
        if session is not None:
            remove_tree(session)
            with contextlib.suppress(OSError):
                self.root.rmdir()  # the last session out leaves no trace


def _shell_env(workspace: Path, tag: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _HIDDEN and not key.startswith(_HIDDEN_PREFIXES)
    }
    env.setdefault("LANG", "C.UTF-8")
    env.update(
        HOME=str(workspace),
        PWD=str(workspace),
        TERM="dumb",
        PAGER="cat",
        GIT_PAGER="cat",
        GIT_AUTHOR_NAME="agent",
        GIT_AUTHOR_EMAIL="agent@openenv.invalid",
        GIT_COMMITTER_NAME="agent",
        GIT_COMMITTER_EMAIL="agent@openenv.invalid",
    )
    env[TAG_VAR] = tag
    return env


def _refuse_server_files(path: Path) -> None:
    """File operations run in the server: they must not reach its own ``/proc`` files (its
    environment holds the token; its ``fd/`` holds every session's pipes), which the shell
    itself cannot read (the server is non-dumpable)."""
    # Both the path and its directory resolved: /dev/fd/N is a link to what fd N is (a pipe
    # has no path at all), but its directory resolves to /proc/<server>/fd.
    for real in (os.path.realpath(path), os.path.realpath(path.parent)):
        parts = real.split("/")
        if len(parts) > 2 and parts[1] == "proc" and parts[2].isdigit():
            try:
                ours = {int(task) for task in os.listdir("/proc/self/task")} | {os.getpid()}
            except OSError:
                ours = {os.getpid()}
            if int(parts[2]) in ours:
                message = "Permission denied (the server's own process files)"
                raise PermissionError(13, message, str(path))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{type(exc).__name__}: {exc.strerror}{where}"
    return f"{type(exc).__name__}: {exc}"


def _write(path: Path, content: bytes, mode: int) -> None:
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"mode must be a permission mode (0 to 0o7777), not {mode:#o}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _read(path: Path, limit: int) -> tuple[bytes, bool]:
    # Non-blocking: a FIFO with no writer must not hang the session.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if os.path.isdir(path):
            raise IsADirectoryError(21, "Is a directory", str(path))
        chunks = bytearray()
        while len(chunks) <= limit:
            try:
                chunk = os.read(fd, min(1 << 20, limit + 1 - len(chunks)))
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks += chunk
    finally:
        os.close(fd)
    return bytes(chunks[:limit]), len(chunks) > limit


def _list(path: Path) -> tuple[list[DirEntry], bool]:
    entries: list[DirEntry] = []
    with os.scandir(path) as listing:
        for entry in listing:
            if len(entries) == MAX_ENTRIES:
                return sorted(entries, key=lambda e: e.name), True
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                entries.append(DirEntry(entry.name, "other"))
                continue
            if entry.is_symlink():
                kind = "link"
            elif entry.is_dir(follow_symlinks=False):
                kind = "dir"
            elif entry.is_file(follow_symlinks=False):
                kind = "file"
            else:
                kind = "other"
            entries.append(DirEntry(entry.name, kind, info.st_size if kind == "file" else 0))
    return sorted(entries, key=lambda e: e.name), False


def _junit(report: Path) -> TestResult:
    try:
        root = ElementTree.parse(report).getroot()
    except (OSError, ElementTree.ParseError):
        return TestResult(passed=0, total=0)
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    total = failed = 0
    for suite in suites:
        total += int(suite.get("tests", 0))
        for key in ("failures", "errors", "skipped"):
            failed += int(suite.get(key, 0))
    return TestResult(passed=max(0, total - failed), total=total)
