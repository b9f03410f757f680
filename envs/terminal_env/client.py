"""Typed clients of the terminal environment."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from envs.terminal_env.models import (
    Operation,
    TerminalAction,
    TerminalObservation,
    TerminalState,
    as_action,
)
from openenv.launch import AsyncEnv, Env
from openenv.types import StepResult

__all__ = ["AsyncTerminalEnv", "TerminalEnv"]


class AsyncTerminalEnv(AsyncEnv[TerminalAction, TerminalObservation, TerminalState]):
    """Async client of the terminal environment. ``step`` takes an operation
    (``Exec("ls")``, ``WriteFile(...)``, ...) or a :class:`TerminalAction`.

    ``from_process()`` runs the server, and so every command, as you, on your machine, with
    your files and your network: it is **not a sandbox**; use it for development and tests.
    ``from_docker_image("terminal-env:latest")`` is the sandbox.
    """

    server_app = "envs.terminal_env"

    def step(
        self, action: TerminalAction | Operation
    ) -> Coroutine[Any, Any, StepResult[TerminalObservation]]:
        return super().step(as_action(action))


class TerminalEnv(Env[TerminalAction, TerminalObservation, TerminalState]):
    """Sync client of the terminal environment (see :class:`AsyncTerminalEnv`; the same
    warning holds: ``from_process()`` is not a sandbox)."""

    async_client = AsyncTerminalEnv

    def step(self, action: TerminalAction | Operation) -> StepResult[TerminalObservation]:
        return super().step(as_action(action))
