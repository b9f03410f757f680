"""The background event-loop thread that the sync clients drive their async twins on."""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def _background_loop() -> asyncio.AbstractEventLoop:
    """The shared loop, started on first use; one thread serves every sync client."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = _new_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=run, name="openenv-loop", daemon=True).start()
            ready.wait()
            _loop = loop
        return _loop


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on the background loop and wait for its result.

    Works from any thread, including one whose own event loop is running (Jupyter, a thread
    pool inside an async app), except the background loop's own thread, where it would wait
    on itself forever.
    """
    loop = _background_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coroutine.close()
        raise RuntimeError(
            "a sync openenv client was called from its own event loop; use the async client"
        )
    return asyncio.run_coroutine_threadsafe(coroutine, loop).result()


@atexit.register
def _stop_loop() -> None:
    if _loop is not None and not _loop.is_closed():
        _loop.call_soon_threadsafe(_loop.stop)
