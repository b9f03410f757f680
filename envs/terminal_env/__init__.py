"""Terminal environment: a persistent bash per session, files, background processes, and
tasks graded by their own tests."""

from envs.terminal_env.client import AsyncTerminalEnv, TerminalEnv
from envs.terminal_env.models import (
    DirEntry,
    Evaluate,
    Exec,
    Kill,
    ListDir,
    Operation,
    Poll,
    ReadFile,
    Start,
    TerminalAction,
    TerminalObservation,
    TerminalState,
    TestResult,
    WriteFile,
)

__all__ = [
    "AsyncTerminalEnv",
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
    "TerminalEnv",
    "TerminalObservation",
    "TerminalState",
    "TestResult",
    "WriteFile",
    "sample_action",
]


def sample_action(size: int) -> TerminalAction:
    """A cheap command about ``size`` bytes long, for ``openenv bench --env terminal``."""
    return TerminalAction(op=Exec("true" + (" #" + "x" * (size - 6) if size > 6 else "")))
