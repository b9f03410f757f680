"""Fork tickets: how a copy of a session's env waits for the connection that will serve it.

A ``Fork`` request makes the copies at once (the state they copy is the state at that moment)
and parks each under a ticket. A new connection presenting the ticket at the handshake becomes
the copy's session. Tickets are

- **single-use**: redeeming one removes it;
- **short-lived**: an unredeemed ticket expires after ``ttl`` seconds, and its copy is closed;
- **bound to the server's token**: a ticket is ``NONCE.MAC`` with the MAC keyed by the token (by
  a random per-process secret when the server has none), so a server with another token refuses
  it before looking it up, and nobody can mint one without the token.

A parked copy holds a session slot (it counts as a session from the fork on), so forking a full
server fails with ``capacity`` rather than leaving tickets that can never be redeemed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import inspect
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openenv.server.environment import Environment

__all__ = ["ParkedFork", "TicketBook"]

log = logging.getLogger("openenv.server")

_MAC_CHARS = 43  # base64url of a SHA-256 MAC, without padding


@dataclass
class ParkedFork:
    """A copy of an env waiting for its session.

    Attributes:
        env: the copy.
        was_reset: whether the parent had an episode (then the copy may step at once).
        parent: the parent's session id.
    """

    env: Environment[Any, Any, Any]
    was_reset: bool
    parent: str
    expiry: asyncio.TimerHandle | None = None


class TicketBook:
    """The server's parked forks, by ticket.

    Args:
        token: the server's bearer token (None: a random secret keys the MACs).
        ttl: seconds a ticket stays valid.
        reserve: takes that many of the server's session slots if all are free (returns
            whether it did).
        release: gives that many slots back.
    """

    def __init__(
        self,
        token: str | None,
        ttl: float,
        reserve: Callable[[int], bool],
        release: Callable[[int], None],
    ) -> None:
        self._key = token.encode() if token else secrets.token_bytes(32)
        self.ttl = ttl
        self.reserve = reserve
        self.release = release
        self._parked: dict[str, ParkedFork] = {}
        self._by_parent: dict[str, int] = {}  # parked forks per parent session
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._parked)

    def parked_by(self, parent: str) -> int:
        """How many forks of session ``parent`` wait for their tickets."""
        return self._by_parent.get(parent, 0)

    def issue(self, fork: ParkedFork) -> str:
        """Park ``fork`` (whose slot is already reserved) and return its ticket."""
        nonce = secrets.token_urlsafe(18)
        self._parked[nonce] = fork
        self._by_parent[fork.parent] = self._by_parent.get(fork.parent, 0) + 1
        fork.expiry = asyncio.get_running_loop().call_later(self.ttl, self._expire, nonce)
        return f"{nonce}.{self._mac(nonce)}"

    def redeem(self, ticket: str) -> ParkedFork | None:
        """The fork parked under ``ticket``, removed from the book; None if the ticket is not
        valid here (forged, from a server with another token, used, or expired)."""
        nonce, _, mac = ticket.partition(".")
        # Constant time: how long the check takes says nothing about the right MAC.
        if not hmac.compare_digest(mac.encode(), self._mac(nonce).encode()):
            return None
        fork = self._unpark(nonce)
        if fork is not None and fork.expiry is not None:
            fork.expiry.cancel()
        return fork

    def _unpark(self, nonce: str) -> ParkedFork | None:
        fork = self._parked.pop(nonce, None)
        if fork is not None:
            left = self._by_parent[fork.parent] - 1
            if left:
                self._by_parent[fork.parent] = left
            else:
                del self._by_parent[fork.parent]
        return fork

    def discard(self, env: Environment[Any, Any, Any]) -> None:
        """Close a copy that will never be served, in the background, and free its slot."""
        self.release(1)
        try:
            closing = env.close()
        except Exception:
            log.warning("closing a discarded fork failed", exc_info=True)
            return
        if inspect.isawaitable(closing):
            task = asyncio.ensure_future(_quietly(closing))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _expire(self, nonce: str) -> None:
        fork = self._unpark(nonce)
        if fork is not None:
            log.debug("fork ticket of session %s expired unused", fork.parent)
            self.discard(fork.env)

    def _mac(self, nonce: str) -> str:
        digest = hmac.new(self._key, nonce.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode()[:_MAC_CHARS]


async def _quietly(closing: Any) -> None:
    try:
        await closing
    except Exception:
        log.warning("closing a discarded fork failed", exc_info=True)
