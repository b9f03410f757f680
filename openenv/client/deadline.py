"""Per-call time limits for one session, cheap enough for the step hot path.

``asyncio.timeout`` schedules a timer and cancels it on every call: ~4 µs a call once hundreds of
sessions are in flight, a tenth of a client's whole cost per step. Calls on one session run one
at a time, so one timer per session suffices: a call only records its deadline; the timer, when
it fires, cancels the call in flight if that call is past its deadline, or re-arms itself for
it. With back-to-back calls the timer fires about once per ``seconds``.
"""

from __future__ import annotations

import asyncio

__all__ = ["Deadline"]


class Deadline:
    """The time limit of the calls of one session; ``seconds=None`` means none."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[object] | None = None
        self._due = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._fired = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use ``loop``, the one the session's connection lives on (saves a lookup per call)."""
        self._loop = loop

    def start(self) -> None:
        """A call begins in the current task."""
        if self.seconds is None:
            return
        loop = self._loop or asyncio.get_running_loop()
        self._task = asyncio.current_task(loop)
        self._due = loop.time() + self.seconds
        if self._timer is None:
            self._timer = loop.call_at(self._due, self._check)

    @property
    def due(self) -> float | None:
        """Loop time at which the call in flight times out (None: no limit)."""
        return None if self.seconds is None else self._due

    def fire(self) -> None:
        """The call in flight is past its deadline: for a waiter that is not a task (a sync
        call run off the loop), which then cancels the call itself."""
        self._fired = True

    def finish(self) -> None:
        """The call ended (the timer, when it fires, finds nothing to do)."""
        self._task = None

    def expired(self) -> bool:
        """Whether the ``CancelledError`` being handled came from this deadline; if so it is
        consumed (the task's cancellation count restored) and the caller raises its timeout."""
        if not self._fired:
            return False
        self._fired = False
        task = asyncio.current_task(self._loop)  # None for a call run off the loop
        if task is not None:
            task.uncancel()
        return True

    def _check(self) -> None:
        self._timer = None
        task = self._task
        if task is None or task.done():
            return
        loop = task.get_loop()
        if loop.time() >= self._due:
            self._fired = True
            task.cancel()
        else:
            self._timer = loop.call_at(self._due, self._check)
