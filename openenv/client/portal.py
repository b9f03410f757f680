"""Coroutines run from sync code: one event loop per process, in a thread of its own.

Sync sessions need no event loop (``client.sync_client``); what sits under some of them does:
starting and stopping servers (providers), an ``EnvPool`` behind a Gymnasium vector env.
:func:`run_sync` hands such a coroutine to the loop's thread and blocks until it is done. The
loop runs all the time, so what lives on it (a pool's sessions) answers its servers' pings
between calls.

After ``fork()`` the child has no loop thread (and the parent's loop is the parent's): its
first ``run_sync`` starts one of its own.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")


class _Portal:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="openenv-loop")
        self.thread.daemon = True
        self.thread.start()


_portal: _Portal | None = None
_portal_lock = threading.Lock()
# A forked child keeps its parent's portal, unused: collecting it would close its loop, whose
# epoll instance the child shares with the parent (the parent's loop would lose its wake-ups).
_parents: list[_Portal] = []


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on the process's client loop and return its result, from any thread
    but the loop's own. An interruption (Ctrl-C) cancels the coroutine, then goes on."""
    global _portal
    with _portal_lock:
        if _portal is None:
            _portal = _Portal()
        portal = _portal
    if threading.current_thread() is portal.thread:
        coroutine.close()
        raise RuntimeError("run_sync() was called from the client loop's own thread")
    future = asyncio.run_coroutine_threadsafe(coroutine, portal.loop)
    try:
        return future.result()
    except BaseException:
        future.cancel()  # the task, on the loop: its clean-up runs there
        raise


def _forget_the_parents_portal() -> None:
    global _portal, _portal_lock
    if _portal is not None:
        _parents.append(_portal)
    _portal = None  # its thread, and the holder of its locks, exist only in the parent
    _portal_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_the_parents_portal)
