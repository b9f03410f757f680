"""``EnvPool``: many env sessions from one asyncio process, for RL rollout workers.

A pool opens ``size`` sessions on servers from any provider (``sessions_per_server`` sessions
share one server: one per container for isolation, many per local process for speed), then

- ``await pool.reset(seed=s)`` / ``await pool.step(actions)`` call every env concurrently and
  return results in env order (as in Gymnasium's vector envs, an int seed gives env ``i`` the
  seed ``s + i``; a list gives one seed per env);
- ``async with pool.acquire() as env`` lends one env to a worker for an episode;
- ``await pool.run_episodes(fn, n)`` runs ``n`` episodes over the pool, retrying an episode on a
  fresh env when its env dies;
- ``async with pool.fork(env, n) as group`` branches one env into ``n`` copies of its current
  state (GRPO groups, tree search), closed when the block ends.

With ``fresh_per_episode=True`` every episode gets a server no one has used: ``acquire`` and
``run_episodes`` take one of ``spares`` servers started ahead (``openenv.launch.spares``), and
the server is stopped after the episode. ``size`` then bounds the episodes run at once.

Failure policy: an env that fails inside a batch never costs the others their results.
``reset``/``step`` raise :class:`BatchError`, whose ``results`` hold every env's result (None
where it failed) and ``errors`` the failures by env index. An env whose connection dropped or
whose server died is replaced before the call returns (a fresh session: reset it), and counted
in ``pool.stats``. ``close`` (or leaving ``async with``) stops every server the pool started,
also on cancellation and Ctrl-C.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from openenv.cleanup import run_to_completion
from openenv.client.async_client import AsyncEnvClient
from openenv.exceptions import ConnectError, OpenEnvError, PoolError
from openenv.launch.spares import SpareServers
from openenv.observability.calls import CallMetrics
from openenv.progress import Progress
from openenv.providers.base import Provider, ServerHandle
from openenv.types import StepResult

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

__all__ = ["BatchError", "EnvPool", "Episode", "Forks", "PoolStats"]

ClientT = TypeVar("ClientT", bound=AsyncEnvClient[Any, Any, Any])
T = TypeVar("T")


class BatchError(PoolError):
    """Some envs of a batch call failed.

    Attributes:
        results: one entry per env, in env order: its result, or None where it failed.
        errors: the exception of each failed env, by env index.
    """

    def __init__(self, results: list[Any], errors: dict[int, BaseException]) -> None:
        causes = "; ".join(f"env {i}: {type(e).__name__}: {e}" for i, e in sorted(errors.items()))
        super().__init__(f"{len(errors)} of {len(results)} envs failed ({causes})")
        self.results = results
        self.errors = errors


@dataclass
class PoolStats:
    """What happened to the pool so far.

    ``servers_started`` counts every server (process, container, ...) the pool started: at
    start, as replacements, and the spare servers of a ``fresh_per_episode`` pool, which
    ``servers_retired`` and ``start_failures`` also count; ``forks`` the envs made by
    :meth:`EnvPool.fork`.
    """

    envs_replaced: int = 0
    servers_replaced: int = 0
    failed_calls: int = 0
    startup_s: float = 0.0
    servers_started: int = 0
    servers_retired: int = 0
    start_failures: int = 0
    forks: int = 0


@dataclass
class Episode(Generic[T]):
    """The outcome of one episode of :meth:`EnvPool.run_episodes`."""

    index: int
    result: T | None = None
    error: BaseException | None = None
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Slot(Generic[ClientT]):
    index: int
    server: ServerHandle
    client: ClientT
    busy: bool = field(default=False)


class EnvPool(Generic[ClientT]):
    """``size`` env sessions of ``client_cls`` on servers from ``provider``.

    Args:
        client_cls: the env's async client, e.g. ``AsyncEchoEnv``.
        provider: where servers run; the pool closes it on ``close``.
        size: number of env sessions.
        sessions_per_server: sessions sharing one server (servers are started lazily per
            ``ceil(size / sessions_per_server)``).
        start_concurrency: servers started at once.
        timeout: seconds each call on an env may take.
        show_progress: a progress bar while starting, on a terminal.
        fresh_per_episode: give every ``acquire``/``run_episodes`` episode a server no one has
            used, stopped afterwards; ``size`` then bounds the episodes run at once and there
            are no batch calls.
        spares: servers kept started ahead (each with an open session) in that mode; their
            starts count against ``start_concurrency``.
        registry: a prometheus-client registry to expose the pool's metrics on: its envs'
            calls (``openenv_client_*``: calls, failures and latency by kind) and what
            ``stats`` counts (``openenv_pool_*``). One pool per registry.
    """

    def __init__(
        self,
        client_cls: type[ClientT],
        provider: Provider,
        size: int,
        *,
        sessions_per_server: int = 1,
        start_concurrency: int = 16,
        timeout: float | None = 60.0,
        show_progress: bool = True,
        fresh_per_episode: bool = False,
        spares: int = 2,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if size < 1 or sessions_per_server < 1:
            raise ValueError("size and sessions_per_server must be at least 1")
        if fresh_per_episode and sessions_per_server != 1:
            raise ValueError("fresh_per_episode gives each episode a server of its own")
        self.client_cls = client_cls
        self.provider = provider
        self.size = size
        self.sessions_per_server = sessions_per_server
        self.timeout = timeout
        self.stats = PoolStats()
        #: The calls of the pool's envs, counted when the pool has a ``registry``.
        self.metrics = CallMetrics() if registry is not None else None
        self._start_limit = asyncio.Semaphore(start_concurrency)
        self._show_progress = show_progress
        self._slots: list[_Slot[ClientT]] = []
        self._free: asyncio.Queue[_Slot[ClientT]] = asyncio.Queue()
        self._replacing: dict[str, asyncio.Task[ServerHandle]] = {}
        self._forks: set[ClientT] = set()
        self._spares: SpareServers[ClientT] | None = None
        self._episodes = asyncio.Semaphore(size)
        if fresh_per_episode:
            self._spares = SpareServers(
                provider, self._connect, spares, self._start_limit, self.stats
            )
        self._started = False
        self._closed = False
        self._started_servers = 0
        if registry is not None:
            from openenv.launch.pool_metrics import PoolCollector

            registry.register(PoolCollector(self))

    # Life cycle.

    async def start(self) -> EnvPool[ClientT]:
        """Start the servers and open every session."""
        if self._started:
            return self
        self._started = True
        began = time.perf_counter()
        if self._spares is not None:
            try:
                await self._spares.wait_ready()
            except BaseException:
                await self.close()
                raise
            self.stats.startup_s = time.perf_counter() - began
            return self
        servers = -(-self.size // self.sessions_per_server)
        try:
            progress = Progress(
                "starting env servers",
                total=servers,
                enabled=self._show_progress,
                show_after=_SHOW_PROGRESS_AFTER_S,
            )
            with progress:
                handles = await asyncio.gather(
                    *(self._start_server(progress) for _ in range(servers))
                )
            opening = asyncio.Semaphore(_OPEN_AT_ONCE)

            async def open_session(handle: ServerHandle) -> ClientT:
                async with opening:
                    return await self._connect(handle)

            clients = await asyncio.gather(
                *(open_session(handles[i // self.sessions_per_server]) for i in range(self.size))
            )
        except BaseException:
            await self.close()
            raise
        for index, client in enumerate(clients):
            slot = _Slot(index, handles[index // self.sessions_per_server], client)
            self._slots.append(slot)
            self._free.put_nowait(slot)
        self.stats.startup_s = time.perf_counter() - began
        return self

    async def close(self) -> None:
        """Close every session and stop every server the pool started. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await run_to_completion(self._shut_down())

    async def _shut_down(self) -> None:
        try:
            if self._spares is not None:
                await self._spares.close()
            await asyncio.gather(
                *(client.close() for client in [*self._forks, *(s.client for s in self._slots)]),
                return_exceptions=True,
            )
        finally:
            await self.provider.close()

    async def __aenter__(self) -> EnvPool[ClientT]:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def envs(self) -> list[ClientT]:
        """The current client of every env, in env order (replacements included)."""
        return [slot.client for slot in self._slots]

    def server_of(self, index: int) -> ServerHandle:
        """The server env ``index`` currently has its session on (it changes on replacement)."""
        return self._slots[index].server

    @property
    def servers(self) -> list[ServerHandle]:
        """The distinct servers the envs have their sessions on, in env order of first use."""
        return list({slot.server.id: slot.server for slot in self._slots}.values())

    def __len__(self) -> int:
        return self.size

    # Batch calls.

    async def reset(
        self, *, seed: int | Sequence[int | None] | None = None, **kwargs: Any
    ) -> list[StepResult[Any]]:
        """Reset every env concurrently; results in env order. Raises :class:`BatchError`.

        Args:
            seed: None (each env picks its own), an int ``s`` (env ``i`` gets ``s + i``, so the
                episodes differ yet the batch is reproducible), or one seed per env.
            kwargs: ``episode_id`` and env options, the same for every env.
        """
        seeds = _seeds(seed, self.size)
        return await self._batch(lambda client, s: client.reset(seed=s, **kwargs), seeds)

    async def step(
        self, actions: Sequence[Any], *, reset: Sequence[bool] | None = None
    ) -> list[StepResult[Any]]:
        """Step env ``i`` with ``actions[i]``, all concurrently; results in env order.

        Args:
            actions: one per env.
            reset: where true, env ``i`` is reset (no seed) instead of stepped and its action
                ignored: Gymnasium's next-step autoreset in the same batch.

        Raises:
            BatchError: some envs failed; the others' results are in ``results``.
        """
        if len(actions) != self.size:
            raise ValueError(f"expected {self.size} actions, got {len(actions)}")
        if reset is None:
            return await self._batch(lambda client, action: client.step(action), actions)
        if len(reset) != self.size:
            raise ValueError(f"expected {self.size} reset flags, got {len(reset)}")
        return await self._batch(_step_or_reset, list(zip(actions, reset, strict=True)))

    async def _batch(
        self, call: Callable[[ClientT, Any], Awaitable[T]], arguments: Sequence[Any]
    ) -> list[T]:
        self._check_open()
        if self._spares is not None:
            raise PoolError(
                "a fresh_per_episode pool lends envs per episode: use acquire() or run_episodes()"
            )
        outcomes = await asyncio.gather(
            *(call(slot.client, arg) for slot, arg in zip(self._slots, arguments, strict=True)),
            return_exceptions=True,
        )
        errors = {i: o for i, o in enumerate(outcomes) if isinstance(o, BaseException)}
        if not errors:
            return outcomes  # type: ignore[return-value]
        for error in errors.values():
            if not isinstance(error, Exception):
                raise error  # cancellation and the like are not env failures
        self.stats.failed_calls += len(errors)
        # A slot that cannot be healed now stays broken; its next call fails and heals it again.
        await asyncio.gather(*(self._heal(self._slots[i]) for i in errors), return_exceptions=True)
        results = [None if i in errors else o for i, o in enumerate(outcomes)]
        raise BatchError(results, errors)

    # Lending envs to workers.

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[ClientT]:
        """Lend one env for the length of the block; it returns to the pool afterwards, and is
        replaced first if it broke meanwhile.

        In a ``fresh_per_episode`` pool the env is a session on a server no one has used,
        which is stopped after the block.
        """
        self._check_open()
        if self._spares is not None:
            async with self._episodes, self._fresh_env() as client:
                yield client
            return
        slot = await self._free.get()
        try:
            yield slot.client
        finally:
            try:
                if not self._closed:
                    await self._heal(slot)
            finally:
                self._free.put_nowait(slot)  # even unhealed: its next user heals it again

    async def run_episodes(
        self,
        episode: Callable[[ClientT], Awaitable[T]],
        count: int,
        *,
        retries: int = 1,
    ) -> list[Episode[T]]:
        """Run ``count`` episodes, as many at once as the pool has envs.

        An episode whose env fails with an openenv error is retried on a (replaced) env up to
        ``retries`` times; an episode that still fails is reported with its cause, never lost.
        """
        outcomes = [Episode[T](index) for index in range(count)]

        async def run(outcome: Episode[T]) -> None:
            while outcome.attempts <= retries:
                outcome.attempts += 1
                try:
                    async with self.acquire() as env:
                        outcome.result = await episode(env)
                    outcome.error = None
                    return
                except OpenEnvError as exc:
                    outcome.error = exc

        await asyncio.gather(*(run(outcome) for outcome in outcomes))
        return outcomes

    @asynccontextmanager
    async def _fresh_env(self) -> AsyncIterator[ClientT]:
        assert self._spares is not None
        server, client = await self._spares.take()
        try:
            yield client
        finally:
            self._spares.retire(server, client)

    @property
    def forks_open(self) -> int:
        """Forks made by :meth:`fork` and not closed yet."""
        return len(self._forks)

    @property
    def spares_ready(self) -> int:
        """Spare servers ready to hand out now (``fresh_per_episode`` pools; else 0)."""
        return 0 if self._spares is None else self._spares.ready

    # Branching.

    def fork(self, env: ClientT, count: int) -> Forks[ClientT]:
        """Branch ``env`` into ``count`` new envs, each a copy of its current state (one
        ``Fork`` request; see :meth:`AsyncEnvClient.fork`), for a GRPO group or tree search.

        ``async with pool.fork(env, n) as group:`` closes the forks when the block ends;
        ``group = await pool.fork(env, n)`` leaves that to the caller (``await fork.close()``,
        or the pool's ``close``). Forks live on ``env``'s server and count as its sessions.
        """
        self._check_open()
        return Forks(self, env, count)

    async def _open_forks(self, env: ClientT, count: int) -> list[ClientT]:
        forks = await env.fork_many(count)
        self._forks.update(forks)
        self.stats.forks += count
        return forks

    async def _close_forks(self, forks: list[ClientT]) -> None:
        self._forks.difference_update(forks)
        await asyncio.gather(*(fork.close() for fork in forks), return_exceptions=True)

    # Replacement.

    async def _heal(self, slot: _Slot[ClientT]) -> None:
        """Give ``slot`` a working session again if its session broke."""
        if slot.client.usable:
            return
        await slot.client.close()
        server = await self._live_server(slot.server)
        try:
            client = await self._connect(server)
        except ConnectError:
            # It looked alive but refuses sessions (dying, or wedged): replace it after all.
            server = await self._live_server(server, known_dead=True)
            client = await self._connect(server)
        slot.server, slot.client = server, client
        self.stats.envs_replaced += 1

    async def _live_server(self, server: ServerHandle, known_dead: bool = False) -> ServerHandle:
        """``server`` if it still runs, else its replacement.

        Every slot of one server asks at once when the server dies, so the check and the
        replacement are one task per server, registered before anything is awaited: the first
        slot to ask starts it, the others await the same task. A replacement stays on record
        for the dead server's later slots; an "alive" answer and a failure are forgotten when
        the task ends, so the next call checks again and a failed replacement is retried.
        """
        check = self._replacing.get(server.id)
        if check is None:
            check = asyncio.ensure_future(self._check_or_replace(server, known_dead))
            self._replacing[server.id] = check
            check.add_done_callback(functools.partial(self._forget_check, server.id))
        return await asyncio.shield(check)

    def _forget_check(self, server_id: str, check: asyncio.Task[ServerHandle]) -> None:
        if check.cancelled() or check.exception() is not None or check.result().id == server_id:
            self._replacing.pop(server_id, None)

    async def _check_or_replace(self, server: ServerHandle, known_dead: bool) -> ServerHandle:
        if not known_dead and await self.provider.is_alive(server):
            return server
        await self.provider.stop(server)
        try:
            replacement = await self._start_server(None)
        except OpenEnvError as exc:
            raise PoolError(f"could not replace dead server {server.id}: {exc}") from exc
        self.stats.servers_replaced += 1
        return replacement

    async def _start_server(self, progress: Progress | None) -> ServerHandle:
        async with self._start_limit:
            server = await self.provider.start()
        self.stats.servers_started += 1
        if progress is not None:
            self._started_servers += 1
            progress.update(completed=self._started_servers)
        return server

    async def _connect(self, server: ServerHandle) -> ClientT:
        client = self.client_cls(server.endpoint, timeout=self.timeout, metrics=self.metrics)
        await client.connect()
        return client

    def _check_open(self) -> None:
        if self._closed:
            raise PoolError("the pool is closed")
        if not self._started:
            raise PoolError("start the pool first: await pool.start() or async with pool")


_SHOW_PROGRESS_AFTER_S = 1.0
# Sessions opening at once: below a server's limit on pending handshakes (ServerConfig's
# max_pending, 64), past which it closes the oldest: a pool of 128 sessions on one server
# opened all at once lost half of them.
_OPEN_AT_ONCE = 32


class Forks(Generic[ClientT]):
    """The forks of one env made by :meth:`EnvPool.fork`: await it for the list, or use it as
    an async context manager that closes them on exit."""

    def __init__(self, pool: EnvPool[ClientT], env: ClientT, count: int) -> None:
        self._pool = pool
        self._env = env
        self._count = count
        self._opened: list[ClientT] = []

    def __await__(self) -> Generator[Any, None, list[ClientT]]:
        return self._open().__await__()

    async def _open(self) -> list[ClientT]:
        self._opened = await self._pool._open_forks(self._env, self._count)
        return self._opened

    async def __aenter__(self) -> list[ClientT]:
        return await self._open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await run_to_completion(self._pool._close_forks(self._opened))


def _step_or_reset(client: AsyncEnvClient[Any, Any, Any], call: tuple[Any, bool]) -> Any:
    action, reset = call
    return client.reset() if reset else client.step(action)


def _seeds(seed: int | Sequence[int | None] | None, size: int) -> list[int | None]:
    if seed is None or isinstance(seed, int):
        return [None if seed is None else seed + i for i in range(size)]
    seeds = list(seed)
    if len(seeds) != size:
        raise ValueError(f"expected {size} seeds, one per env, got {len(seeds)}")
    return seeds
