"""Spare servers: servers started ahead so that each episode gets one no one has used.

An :class:`~openenv.launch.pool.EnvPool` with ``fresh_per_episode=True`` takes a spare for
every episode and retires it afterwards. This module keeps ``count`` spares ready or starting
at all times, each with its session already open (so handing one out costs a queue pop, not a
start or a handshake), and stops retired servers in the background.

Starts share the pool's ``start_concurrency`` limit. A start that fails is retried with
back-off and counted; after ``max_failures`` failures in a row the spares give up and every
waiting and later :meth:`SpareServers.take` raises :class:`~openenv.exceptions.PoolError` with
the last cause (a broken image or daemon would otherwise be retried forever).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from openenv.client.async_client import AsyncEnvClient
from openenv.exceptions import PoolError
from openenv.providers.base import Provider, ServerHandle

__all__ = ["SpareServers"]

log = logging.getLogger("openenv.pool")

ClientT = TypeVar("ClientT", bound=AsyncEnvClient[Any, Any, Any])

_BACKOFF_S = 0.1
_MAX_BACKOFF_S = 2.0


class SpareServers(Generic[ClientT]):
    """``count`` started-ahead servers, each with an open session, for one-episode use.

    Args:
        provider: where servers run.
        connect: opens a session on a server.
        count: spares kept ready or starting.
        start_limit: the pool's bound on concurrent starts.
        stats: the pool's stats (``servers_started``, ``start_failures``, ``servers_retired``).
        max_failures: consecutive start failures before giving up.
    """

    def __init__(
        self,
        provider: Provider,
        connect: Callable[[ServerHandle], Coroutine[Any, Any, ClientT]],
        count: int,
        start_limit: asyncio.Semaphore,
        stats: Any,
        *,
        max_failures: int = 5,
    ) -> None:
        if count < 1:
            raise ValueError("spares must be at least 1")
        self.provider = provider
        self.count = count
        self.max_failures = max_failures
        self._connect = connect
        self._start_limit = start_limit
        self._stats = stats
        self._ready: collections.deque[tuple[ServerHandle, ClientT]] = collections.deque()
        self._changed = asyncio.Event()
        self._starting: set[asyncio.Task[None]] = set()
        self._retiring: set[asyncio.Task[None]] = set()
        self._failures = 0
        self._failure: BaseException | None = None
        self._closed = False

    @property
    def ready(self) -> int:
        """Spares ready to hand out now."""
        return len(self._ready)

    async def wait_ready(self) -> None:
        """Wait until all ``count`` spares are ready (pool start-up)."""
        self.fill()
        while len(self._ready) < self.count:
            self._raise_if_failed()
            self._changed.clear()
            await self._changed.wait()

    async def take(self) -> tuple[ServerHandle, ClientT]:
        """A server no one has used and an open session on it; a new spare starts meanwhile.

        Raises:
            PoolError: the spares gave up after repeated start failures, or were closed.
        """
        while True:
            while self._ready:
                server, client = self._ready.popleft()
                self.fill()
                if client.usable:
                    return server, client
                self.retire(server, client)  # died while waiting: never hand it out
            self._raise_if_failed()
            self.fill()
            self._changed.clear()
            await self._changed.wait()

    def retire(self, server: ServerHandle, client: ClientT) -> None:
        """Close ``client`` and stop ``server`` in the background; it is never used again."""
        task = asyncio.ensure_future(self._stop(server, client))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def fill(self) -> None:
        """Start servers until ``count`` are ready or starting."""
        if self._closed or self._failure is not None:
            return
        while len(self._ready) + len(self._starting) < self.count:
            task = asyncio.ensure_future(self._start_one())
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def close(self) -> None:
        """Close the spares' sessions and stop their servers and the retired ones.

        Starts under way are waited for, not cancelled, and their servers stopped: a start
        cancelled inside the provider (a container being created, say) could leave a server
        behind that no one knows of.
        """
        self._closed = True
        self._changed.set()
        await asyncio.gather(*self._starting, return_exceptions=True)
        while self._ready:
            self.retire(*self._ready.popleft())
        await asyncio.gather(*self._retiring, return_exceptions=True)

    async def _start_one(self) -> None:
        try:
            await self._start_until_ready()
        finally:
            # Not counted as starting from here on, before any woken taker runs and refills
            # (a done-callback would run after it, and the refill would come up one short).
            self._starting.discard(asyncio.current_task())

    async def _start_until_ready(self) -> None:
        while not self._closed:
            try:
                async with self._start_limit:
                    server = await self.provider.start()
                try:
                    client = await self._connect(server)
                except BaseException:
                    await self.provider.stop(server)
                    raise
            except Exception as exc:
                self._stats.start_failures += 1
                self._failures += 1
                log.warning("starting a spare server failed (%d in a row): %s", self._failures, exc)
                if self._failures >= self.max_failures:
                    self._failure = exc
                    self._changed.set()
                    return
                await asyncio.sleep(min(_BACKOFF_S * 2 ** (self._failures - 1), _MAX_BACKOFF_S))
                continue
            self._failures = 0
            self._stats.servers_started += 1
            if self._closed:
                self.retire(server, client)
            else:
                self._ready.append((server, client))
                self._changed.set()
            return

    async def _stop(self, server: ServerHandle, client: ClientT) -> None:
        try:
            await client.close()
        finally:
            await self.provider.stop(server)
            self._stats.servers_retired += 1

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise PoolError(
                f"no spare server could be started ({self._failures} failures in a row; "
                f"last: {type(self._failure).__name__}: {self._failure})"
            ) from self._failure
        if self._closed:
            raise PoolError("the pool is closed")
