"""Clean-up that a cancellation cannot cut short."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["run_to_completion"]

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
