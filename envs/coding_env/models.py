"""The coding environment's action, observation and state."""

from __future__ import annotations

from openenv.types import Action, Observation, State

__all__ = ["CodeAction", "CodeObservation", "CodeState"]


class CodeAction(Action):
    """Python source to run in the session's interpreter."""

    code: str


class CodeObservation(Observation):
    """What running the code produced.

    ``stdout`` is what the code printed, then the ``repr`` of the value of a final expression
    statement (if it is not ``None``); ``stderr`` describes the error, if any; ``exit_code`` is
    0 on success and 1 on any error (including a time-out or an interpreter restart).
    """

    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0


class CodeState(State):
    """The episode's bookkeeping plus the exit code of its last step (None before any)."""

    last_exit_code: int | None = None
