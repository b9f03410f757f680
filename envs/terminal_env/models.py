"""The terminal environment's actions, observation and state.

An action is one :class:`TerminalAction` holding one operation, a tagged union: the clients
accept a bare operation (``env.step(Exec("ls"))``) and wrap it. On the wire an operation is a
map with a ``"op"`` key naming it (``{"op": "exec", "command": "ls"}``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from openenv.types import Action, Observation, State

__all__ = [
    "DirEntry",
    "Evaluate",
    "Exec",
    "Kill",
    "ListDir",
    "Operation",
    "Poll",
    "ReadFile",
    "Start",
    "TerminalAction",
    "TerminalObservation",
    "TerminalState",
    "TestResult",
    "WriteFile",
]


class _Op(msgspec.Struct, tag_field="op", omit_defaults=True):
    """An operation; its ``op`` tag is its class's lower-case name."""


class Exec(_Op, tag="exec"):
    """Run ``command`` in the session's persistent bash: ``cd``, exported variables, shell
    functions and aliases carry over to the next ``Exec``, as in a terminal.

    ``cwd`` runs this command in another directory (the shell's own directory is kept);
    ``env`` adds variables for this command only. Past ``timeout_s`` the command's process
    group is killed (and a busy shell interrupted, as Ctrl-C does); the shell stays usable.
    """

    command: str
    timeout_s: float = 30.0
    cwd: str | None = None
    env: dict[str, str] | None = None


class WriteFile(_Op, tag="write_file"):
    """Write ``content`` to ``path`` (relative to the workspace), creating parent directories.
    A ``str`` content is encoded as UTF-8 by the client."""

    path: str
    content: bytes
    mode: int = 0o644

    def __post_init__(self) -> None:
        if isinstance(self.content, str):
            self.content = self.content.encode()


class ReadFile(_Op, tag="read_file"):
    """Read up to ``max_bytes`` of ``path``; the bytes come back exactly, in ``data``."""

    path: str
    max_bytes: int = 1 << 20


class ListDir(_Op, tag="list_dir"):
    """List ``path`` (default: the shell's current directory), in ``entries``."""

    path: str = "."


class Start(_Op, tag="start"):
    """Start ``command`` in the background, in the shell's current directory and environment;
    the observation's ``handle`` names it for :class:`Poll` and :class:`Kill`."""

    command: str
    cwd: str | None = None
    env: dict[str, str] | None = None


class Poll(_Op, tag="poll"):
    """The output a background process wrote since the last poll, and whether it has exited.
    ``wait_s`` waits up to that long for it to exit first."""

    handle: int
    wait_s: float = 0.0


class Kill(_Op, tag="kill"):
    """Kill a background process's whole process group (SIGKILL); returns its last output."""

    handle: int


class Evaluate(_Op, tag="evaluate"):
    """Run the task's tests in the sandbox: sets ``reward`` and ends the episode (``done``)."""


Operation = Exec | WriteFile | ReadFile | ListDir | Start | Poll | Kill | Evaluate


class TerminalAction(Action):
    """One operation (see :data:`Operation`)."""

    op: Operation


class DirEntry(msgspec.Struct, omit_defaults=True):
    """One entry of a :class:`ListDir`: ``kind`` is ``"file"``, ``"dir"``, ``"link"`` or
    ``"other"``."""

    name: str
    kind: str
    size: int = 0


class TestResult(msgspec.Struct, omit_defaults=True):
    """What :class:`Evaluate` ran: tests passed of tests run (1 of 1 for an exit-status test)."""

    passed: int
    total: int


class TerminalObservation(Observation):
    """What an operation produced; fields an operation does not set keep their defaults.

    ``stdout`` and ``stderr`` are kept apart (the command's fd 1 and fd 2 are two pipes),
    decoded as UTF-8 with undecodable bytes replaced by U+FFFD, each capped (the server's
    ``max_output_bytes``, 64 KiB by default): past the cap the rest is read and dropped and
    ``truncated`` is True. ``exit_code`` is the command's status (128 + N when killed by
    signal N; 124 when ``timed_out``); None where nothing ran or it still runs.
    ``error`` says why an operation could not be done (a missing file, an unknown handle),
    with the session still usable.
    """

    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    timed_out: bool = False
    truncated: bool = False
    duration_ms: float = 0.0
    cwd: str = ""
    error: str = ""
    data: bytes = b""
    entries: list[DirEntry] = []
    handle: int | None = None
    running: bool = False
    instruction: str = ""
    tests: TestResult | None = None


class TerminalState(State):
    """The episode's bookkeeping: its task (if any), workspace and live background handles."""

    task: str | None = None
    workspace: str = ""
    cwd: str = ""
    handles: list[int] = []
    evaluated: bool = False


def as_action(value: Any) -> TerminalAction:
    """``value`` as a :class:`TerminalAction` (a bare operation is wrapped)."""
    if isinstance(value, TerminalAction):
        return value
    if isinstance(value, Exec | WriteFile | ReadFile | ListDir | Start | Poll | Kill | Evaluate):
        return TerminalAction(op=value)
    raise TypeError(
        f"a terminal env step takes an operation (Exec, WriteFile, ...) or a TerminalAction, "
        f"not {type(value).__name__}"
    )
