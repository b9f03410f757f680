"""One call at a time per session, for the price of a flag when calls do not overlap.

``asyncio.Lock`` costs a coroutine per acquire and, once it has ever been contended, a
generator scan of its waiters on every later acquire: about 3% of a client's CPU per step.
Calls on one session rarely overlap (a rollout worker awaits each step), so the uncontended
path here is a flag test and two assignments; overlapping calls queue in order.
"""

from __future__ import annotations

import asyncio
import collections
from types import TracebackType

__all__ = ["Turns"]


class Turns:
    """Whose turn it is to use a session; ``busy`` is read and set directly on the hot path::

    if turns.busy:
        await turns.wait()  # returns with the turn taken
    turns.busy = True
    try:
        ...
    finally:
        turns.release()
    """

    def __init__(self) -> None:
        self.busy = False
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    async def wait(self) -> None:
        """Until no call holds the turn (then take it)."""
        while self.busy:
            turn = asyncio.get_running_loop().create_future()
            self._waiting.append(turn)
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self._wake()  # woken, but leaving: wake the next in line instead
                raise
            finally:
                if not turn.done():
                    self._waiting.remove(turn)
        self.busy = True

    def release(self) -> None:
        """End the current call's turn; the next waiting call (if any) takes it."""
        self.busy = False
        if self._waiting:
            self._wake()

    def _wake(self) -> None:
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return

    async def __aenter__(self) -> None:
        if self.busy:
            await self.wait()
        self.busy = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
