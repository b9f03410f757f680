"""How sync clients run their async twins: one shared event loop, driven two ways.

A thread hop per call (``run_coroutine_threadsafe``) costs two thread wake-ups, which on a small
machine take longer than a loopback round trip itself. So a sync call from a thread without an
event loop of its own *drives the shared loop itself* for the length of the call: no hop. When
no call has driven the loop for a moment, a background thread takes over, so keepalive pings
are still answered while the caller thinks, and calls handed over by other threads progress.

A call from a thread that already runs an event loop (Jupyter, a coroutine's thread pool), or
one made while another thread drives, is handed over to whichever thread drives.

A session's call can go further and skip the loop altogether (``off_loop``): the caller steps
the call's coroutine itself, and where it awaits a reply, blocks in ``poll`` on the session's
socket and feeds what it reads to the connection, as the loop would. Starting and stopping the
loop, its iterations and its wake-ups cost more than the call's own work on one session; off
the loop a sync call is a send, a poll and a read. Whatever else the coroutine awaits, the
loop runs until that is done.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
import time
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

__all__ = ["OffLoopWaits", "run_sync"]

T = TypeVar("T")

_HAND_BACK_AFTER_S = 0.05


class OffLoopWaits(Protocol):
    """How a call's waits are met off the loop (``AsyncEnvClient``'s ``OffLoop``)."""

    def ready(self) -> bool:
        """Whether the call can start off the loop now."""

    def wait(self, future: asyncio.Future[Any]) -> bool:
        """Block until ``future`` is done (or cancel it at the call's deadline); False when
        only the loop can resolve it."""


class _Portal:
    def __init__(self) -> None:
        # The plain asyncio loop: starting and stopping it per call costs ~8 µs, uvloop's ~30.
        self.loop = asyncio.new_event_loop()
        self._driver = threading.Lock()  # held by whichever thread runs the loop
        # Guards the four fields below; the two per-call sections take its lock directly (the
        # Condition's own with-statement adds two Python-level calls to each).
        self._state_lock = threading.Lock()
        self._cond = threading.Condition(self._state_lock)
        self._direct_active = False  # a caller drives (or is taking over) the loop
        self._last_direct = 0.0  # when the last direct call ended (monotonic)
        self._handed_over = 0  # calls waiting for whoever drives
        self._park: asyncio.Future[None] | None = None  # set while the background drives
        threading.Thread(target=self._background, name="openenv-loop", daemon=True).start()

    def run(self, coroutine: Coroutine[Any, Any, T], off_loop: OffLoopWaits | None = None) -> T:
        # The loop-free check: get_running_loop() raises (and a raise costs more than the
        # rest of this dispatch) in the common case, a thread with no loop.
        running = asyncio.events._get_running_loop()
        if running is self.loop:
            coroutine.close()
            raise RuntimeError("a sync openenv client was called from its own event loop")
        if running is None and self._take_driver():
            try:
                # Off the loop only while no other thread's call waits for the loop to run.
                if off_loop is not None and not self._handed_over and off_loop.ready():
                    return self._step_through(coroutine, off_loop)
                return self._drive(coroutine)
            finally:
                self._release_driver()
        return self._hand_over(coroutine)

    def _drive(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """``run_until_complete``, one loop iteration shorter: the call stops the loop itself
        as it ends, instead of through a done-callback that runs an iteration later."""
        loop = self.loop

        async def call_then_stop() -> T:
            try:
                return await coroutine
            finally:
                loop.stop()

        task = loop.create_task(call_then_stop())
        try:
            loop.run_forever()
        finally:
            if not task.done():  # interrupted (Ctrl-C): do not leave the call half done
                task.cancel()
                loop.run_forever()  # until the cancelled call stops the loop on its way out
        return task.result()

    def _step_through(self, coroutine: Coroutine[Any, Any, T], off_loop: OffLoopWaits) -> T:
        """Run ``coroutine`` on this thread, outside any task, the loop stopped: its waits are
        met by ``off_loop``, or by running the loop until what it awaits is done."""
        awaited: Any = None
        try:
            while True:
                awaited = coroutine.send(None)
                if awaited is not None and not off_loop.wait(awaited):
                    self._run_until_done(awaited)
        except StopIteration as returned:
            return returned.value  # type: ignore[no-any-return]
        except BaseException:
            if inspect.getcoroutinestate(coroutine) == inspect.CORO_SUSPENDED:  # Ctrl-C, say
                # Cancel the call as a task would be: its clean-up runs, its late reply is
                # dropped; then the interruption goes on.
                if isinstance(awaited, asyncio.Future):
                    awaited.cancel()
                try:
                    coroutine.throw(asyncio.CancelledError())
                except BaseException:
                    pass
            raise

    def _run_until_done(self, future: Any) -> None:
        """Run the loop until ``future`` is done (it resolves with no task of ours awaiting)."""
        if future.done():
            return

        def stop(_: object) -> None:
            self.loop.stop()

        future.add_done_callback(stop)
        try:
            self.loop.run_forever()
        finally:
            future.remove_done_callback(stop)  # interrupted: no stray stop for a later run

    def _take_driver(self) -> bool:
        with self._state_lock:
            if self._direct_active:
                return False  # another caller drives: hand over rather than queue behind it
            self._direct_active = True  # from now on the background thread keeps off
            park = self._park
        if park is not None:
            self.loop.call_soon_threadsafe(_resolve, park)
        self._driver.acquire()
        return True

    def _release_driver(self) -> None:
        with self._state_lock:
            self._direct_active = False
            self._last_direct = time.monotonic()
            self._driver.release()
            if self._handed_over:
                self._cond.notify()

    def _hand_over(self, coroutine: Coroutine[Any, Any, T]) -> T:
        with self._cond:
            self._handed_over += 1
            self._cond.notify()
        try:
            return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()
        finally:
            with self._cond:
                self._handed_over -= 1

    def _background(self) -> None:
        while True:
            self._wait_for_turn()
            with self._cond:
                if self._direct_active or not self._driver.acquire(blocking=False):
                    continue  # a caller got there first
                # Under the same lock a caller checks for a park to resolve: it sees this one.
                self._park = park = self.loop.create_future()
            try:
                self.loop.run_until_complete(park)
            finally:
                with self._cond:
                    self._park = None
                self._driver.release()

    def _wait_for_turn(self) -> None:
        """Return when calls were handed over, or the loop has been idle for a moment."""
        with self._cond:
            while True:
                if self._direct_active:
                    self._cond.wait(_HAND_BACK_AFTER_S)
                    continue
                idle = time.monotonic() - self._last_direct
                if self._handed_over or idle >= _HAND_BACK_AFTER_S:
                    return
                self._cond.wait(_HAND_BACK_AFTER_S - idle)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_portal: _Portal | None = None
_portal_lock = threading.Lock()


def _forget_the_parents_portal() -> None:
    """In a forked child: the parent's loop thread does not exist here, and its locks may be
    held by it forever. The child's first sync call makes a portal of its own."""
    global _portal, _portal_lock
    _portal = None
    _portal_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_the_parents_portal)


def run_sync(coroutine: Coroutine[Any, Any, T], off_loop: OffLoopWaits | None = None) -> T:
    """Run ``coroutine`` on the shared client loop from any thread and return its result;
    off the loop where ``off_loop`` says it can (see the module's docstring)."""
    global _portal
    if _portal is None:
        with _portal_lock:
            if _portal is None:
                _portal = _Portal()
    return _portal.run(coroutine, off_loop)
