"""Per-call time limits for one session, cheap enough for the step hot path.

``asyncio.timeout`` schedules a timer and cancels it on every call: ~4 µs a call once hundreds of
sessions are in flight, a tenth of a client's whole cost per step. Calls on one session run one
at a time, so one timer per session suffices: a call only records its deadline; the timer, when
it fires, interrupts the call in flight if that call is past its deadline, or re-arms itself for
it. With back-to-back calls the timer fires about once per ``seconds``.

A call past its deadline is interrupted by cancelling the future it awaits (its reply), not its
task: the call sees ``CancelledError`` where it waits, and no task has a cancellation to undo.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

__all__ = ["Deadline"]


class Deadline:
    """The time limit of the calls of one session; ``seconds=None`` means none."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._interrupt: Callable[[], bool] = _nothing_awaited
        self._due = math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._fired = False

    def bind(self, loop: asyncio.AbstractEventLoop, interrupt: Callable[[], bool]) -> None:
        """Use ``loop``, the one the session's connection lives on; ``interrupt`` cancels what
        the call in flight awaits and says whether it awaited anything."""
        self._loop = loop
        self._interrupt = interrupt

    def start(self) -> None:
        """A call begins (after :meth:`bind`); it ends when what it awaits is done."""
        seconds = self.seconds
        if seconds is None:
            self._due = math.inf
            return
        loop = self._loop
        assert loop is not None
        self._due = due = loop.time() + seconds
        if self._timer is None:
            self._timer = loop.call_at(due, self._check)

    def expired(self) -> bool:
        """Whether the ``CancelledError`` being handled came from this deadline; if so it is
        consumed and the caller raises its timeout."""
        if not self._fired:
            return False
        self._fired = False
        return True

    def _check(self) -> None:
        self._timer = None
        loop, due = self._loop, self._due
        assert loop is not None
        if loop.time() < due:
            if due != math.inf:
                self._timer = loop.call_at(due, self._check)
        elif self._interrupt():  # a call was in flight past its deadline
            self._fired = True


def _nothing_awaited() -> bool:
    return False
