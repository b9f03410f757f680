"""Clean-up that a cancellation, Ctrl-C or SIGTERM cannot cut short."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["exit_on_sigterm", "run_to_completion"]

T = TypeVar("T")


async def run_to_completion(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` to its end even if the caller is cancelled meanwhile, then re-raise
    the cancellation. A shutdown cut in half leaks processes and containers; Ctrl-C during a
    pool's ``close`` (or a second ``cancel()``) must not do that."""
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise  # the clean-up itself was cancelled from inside
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


_sigterm_installed = False


def exit_on_sigterm() -> None:
    """Make SIGTERM unwind the program like Ctrl-C does (``SystemExit(143)``), so that
    ``finally`` blocks, ``async with`` exits and exit hooks remove what providers started.

    Installed once, from the main thread, and only while SIGTERM has its default action (which
    ends the process with no clean-up at all): a handler the application set is never replaced.
    """
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    _sigterm_installed = True
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    code = 128 + signum
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise SystemExit(code) from None
    # Inside a running loop, raised from a loop callback rather than from whatever task the
    # signal interrupted: a task that dies of SystemExit is reported at exit as "Task
    # exception was never retrieved". From a callback it leaves the loop cleanly, and
    # asyncio.run then cancels every task, so each runs its clean-up, before the exit.
    loop.call_soon_threadsafe(_raise_exit, code)


def _raise_exit(code: int) -> None:
    raise SystemExit(code)
