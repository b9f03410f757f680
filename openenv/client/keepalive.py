"""Pings answered for a process's sync sessions between their calls.

A sync session's socket is read by the thread that calls it, during the call (see
``client.sync_connection``). Servers ping their clients (every 20 s by default) and drop one
that does not answer in time, so between calls (while the program thinks, or steps another
session, or waits in another session's long call) one background thread per process reads
every idle session: pongs go out, anything else is queued for the session's next call.

The thread polls all idle sessions' sockets at once, in rounds of :data:`ROUND_S`. A session
that starts a call during a round is left to that call until the next round (its lock is
taken), so a session stepping back to back wakes the thread at most once a round; what one
session does never keeps the others from being read.

After ``fork()`` the child has no such thread: it starts its own for the sessions it opens
(the parent's sessions are the parent's, see :class:`~openenv.InheritedSessionError`).
"""

from __future__ import annotations

import os
import select
import threading
import time
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openenv.client.sync_connection import SyncConnection

__all__ = ["ROUND_S", "forget", "watch"]

#: Seconds between the keepalive's looks at which sessions are idle: also the longest a
#: session that just ended a call waits to be read again (far below any ping timeout).
ROUND_S = 0.1


class _Keepalive:
    def __init__(self) -> None:
        # Weak: a session dropped without close() is not kept open by its pongs.
        self._sessions: weakref.WeakSet[SyncConnection] = weakref.WeakSet()
        self._added = threading.Condition()
        threading.Thread(target=self._run, name="openenv-keepalive", daemon=True).start()

    def watch(self, connection: SyncConnection) -> None:
        with self._added:
            self._sessions.add(connection)
            self._added.notify()

    def forget(self, connection: SyncConnection) -> None:
        with self._added:
            self._sessions.discard(connection)

    def _run(self) -> None:
        while True:
            with self._added:
                while not self._sessions:
                    self._added.wait()
                sessions = {connection.fd: connection for connection in self._sessions}
            self._round(sessions)

    @staticmethod
    def _round(sessions: dict[int, SyncConnection]) -> None:
        """Read every session in ``sessions`` as data arrives, for one round; a session that a
        call is reading, or whose connection is done, is dropped from the round."""
        poll = select.poll()
        for fd in sessions:
            poll.register(fd, select.POLLIN)
        end = time.monotonic() + ROUND_S
        while (left := end - time.monotonic()) > 0:
            if not sessions:
                time.sleep(left)
                return
            for fd, _ in poll.poll(left * 1000):
                if not sessions[fd].pump():
                    poll.unregister(fd)
                    del sessions[fd]


_keepalive: _Keepalive | None = None
_lock = threading.Lock()


def watch(connection: SyncConnection) -> None:
    """Have the process's keepalive thread read ``connection`` whenever no call does, until
    it closes (or is dropped)."""
    global _keepalive
    with _lock:
        if _keepalive is None:
            _keepalive = _Keepalive()
        _keepalive.watch(connection)


def forget(connection: SyncConnection) -> None:
    """Stop reading ``connection`` (it is closed)."""
    if _keepalive is not None:
        _keepalive.forget(connection)


def _forget_the_parents_keepalive() -> None:
    global _keepalive, _lock
    _keepalive = None  # its thread, and its locks' holder, exist only in the parent
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_the_parents_keepalive)
