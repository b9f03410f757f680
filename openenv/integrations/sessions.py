"""Env sessions for trainers that call from plain (sync) code, on any thread.

:class:`Sessions` is one :class:`~openenv.EnvPool` on the sync clients' shared loop, started
on first use and closed once; :class:`EpisodeSession` holds one of its sessions for one
episode. The trainer adapters (TRL, SkyRL, verl) are thin layers over these two, so they heal
and fail the same way:

- a session is leased at the start of an episode and given back at its end (or at the start of
  the next one); a session whose connection dropped or whose server died is reopened as it is
  given back, on a replacement server if need be (the pool's ``acquire``);
- a reset that finds its session dead gives it back and tries again on another;
- a step that fails raises :class:`~openenv.integrations.tools.ToolCallError`: for the model,
  a failed call; for the run, nothing worse.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, TypeVar

from openenv.client.async_client import AsyncEnvClient
from openenv.client.portal import run_sync
from openenv.endpoint import Endpoint
from openenv.exceptions import OpenEnvError, PoolError
from openenv.integrations.tools import ToolCallError, ToolSpec, declared_tools, tools_of
from openenv.launch.pool import EnvPool
from openenv.providers.base import Provider
from openenv.providers.endpoints import EndpointProvider
from openenv.types import Observation

__all__ = ["EpisodeSession", "Sessions", "Where", "provider_of"]

ClientT = TypeVar("ClientT", bound=AsyncEnvClient[Any, Any, Any])

Where = Provider | str | Endpoint | Sequence[str | Endpoint]

# How often a reset tries again on another session after the one it got turned out dead.
RESET_ATTEMPTS = 3


def provider_of(where: Where) -> Provider:
    """``where`` as a provider: itself, or the servers already running at those endpoints."""
    if isinstance(where, Provider):
        return where
    if isinstance(where, str | Endpoint):
        return EndpointProvider([where])
    return EndpointProvider(list(where))


class Sessions(Generic[ClientT]):
    """``max_sessions`` sessions of ``client_cls`` (``sessions_per_server`` per server) for
    sync callers on any thread.

    Args:
        wait: when every session is leased, ``lease`` waits for one (SkyRL, verl: episodes
            end and give theirs back) instead of raising :class:`PoolError` (TRL: an
            instance keeps its session until its own next reset, so waiting would never end).
    """

    def __init__(
        self,
        client_cls: type[ClientT],
        where: Where,
        *,
        max_sessions: int,
        sessions_per_server: int = 16,
        timeout: float | None = 60.0,
        wait: bool = False,
    ) -> None:
        self.client_cls = client_cls
        self.pool = EnvPool(
            client_cls,
            provider_of(where),
            max_sessions,
            sessions_per_server=sessions_per_server,
            timeout=timeout,
            show_progress=False,
        )
        self.wait = wait
        self.closed = False
        self.leased = 0
        self.tool_calls = 0
        self.tool_failures = 0
        self._lock = threading.Lock()
        self._started = False

    def start(self) -> None:
        """Start the servers and open the sessions (the first lease does it anyway)."""
        with self._lock:
            if self.closed:
                raise PoolError("these env sessions are closed (training ended)")
            if not self._started:
                run_sync(self.pool.start())
                self._started = True
                atexit.register(self.close)

    def lease(self) -> Lease[ClientT]:
        """One session, for one episode."""
        self.start()
        with self._lock:
            if not self.wait and self.leased >= self.pool.size:
                raise PoolError(
                    f"more episodes at once than max_sessions={self.pool.size}: raise "
                    "max_sessions to the number of rollouts the trainer runs at once"
                )
            self.leased += 1
        lease = Lease(self, self.pool.acquire())
        try:
            lease.client = run_sync(lease.manager.__aenter__())
        except BaseException:
            with self._lock:
                self.leased -= 1
            raise
        return lease

    def declared_tools(self) -> list[ToolSpec]:
        """The tools the env declares (``list_tools``; none for most envs), asked of one of
        the sessions (so the servers start here)."""
        lease = self.lease()
        try:
            assert lease.client is not None
            return declared_tools(run_sync(lease.client.list_tools()))
        finally:
            lease.give_back()

    def tools(self, which: str = "auto", tool_name: str | None = None) -> list[ToolSpec]:
        """The env's tools for a trainer: ``"actions"``, one per action kind (no server
        needed); ``"declared"``, the env's own ``@tool`` methods (asked of a session, so the
        servers start here); ``"auto"``, the declared tools and then one per action kind whose
        name no declared tool takes (the terminal env: its exec, read_file and write_file
        tools, and evaluate, list_dir, ... from its actions)."""
        if which not in ("auto", "actions", "declared"):
            raise ValueError(f"tools must be 'auto', 'actions' or 'declared', not {which!r}")
        actions = tools_of(self.client_cls.action_type, tool_name)
        if which == "actions":
            return actions
        declared = self.declared_tools()
        if which == "declared":
            return declared
        taken = {spec.name for spec in declared}
        return [*declared, *(spec for spec in actions if spec.name not in taken)]

    def close(self) -> None:
        """Close every session and stop every server. Idempotent."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        atexit.unregister(self.close)
        run_sync(self.pool.close())


class Lease(Generic[ClientT]):
    """One session lent by the pool (an open ``pool.acquire()`` block)."""

    def __init__(
        self, sessions: Sessions[ClientT], manager: AbstractAsyncContextManager[ClientT]
    ) -> None:
        self.sessions = sessions
        self.manager = manager
        self.client: ClientT | None = None

    def give_back(self) -> None:
        """Return the session; the pool reopens it first if it broke."""
        if self.client is None:
            return
        self.client = None
        sessions = self.sessions
        with sessions._lock:
            sessions.leased -= 1
        if not sessions.closed:
            run_sync(self.manager.__aexit__(None, None, None))


class EpisodeSession:
    """One episode's hold on a session of ``sessions``: ``start`` (lease and reset), ``call``
    (one tool call), ``end``; ``rewards`` and ``done`` as the env reported them."""

    def __init__(self, sessions: Sessions[Any]) -> None:
        self.sessions = sessions
        self.rewards: list[float] = []
        self.done = False
        self._lease: Lease[Any] | None = None
        self._env: AsyncEnvClient[Any, Any, Any] | None = None  # leased, on the client loop

    def start(self, options: Mapping[str, Any]) -> Observation:
        """Give back the last episode's session, lease one and reset it with ``options``;
        the first observation. A dead session is given back (and so reopened) and another
        tried, up to :data:`RESET_ATTEMPTS` times."""
        self.rewards, self.done = [], False
        error: Exception | None = None
        for _ in range(RESET_ATTEMPTS):
            self.end()
            self._lease = lease = self.sessions.lease()
            assert lease.client is not None
            self._env = lease.client
            try:
                result = run_sync(self._env.reset(**options))
            except OpenEnvError as exc:
                error = exc
                continue
            observation: Observation = result.observation
            self._record(observation)
            return observation
        self.end()
        raise PoolError(f"no working env session after {RESET_ATTEMPTS} tries: {error}")

    def call(self, spec: ToolSpec, arguments: Mapping[str, Any]) -> Observation:
        """Step the env with the action of one tool call; :class:`ToolCallError` if it fails."""
        sessions = self.sessions
        sessions.tool_calls += 1
        try:
            if self._env is None:
                raise ToolCallError(f"{spec.name}(): no episode (reset first)")
            if self.done:
                raise ToolCallError(f"{spec.name}(): the episode is over; no more calls")
            action = None if spec.build is None else spec.action(arguments)
            try:
                if action is None:  # a tool the env declares: called by name
                    result = run_sync(self._env.call_tool(spec.name, **arguments))
                else:
                    result = run_sync(self._env.step(action))
            except OpenEnvError as exc:
                raise ToolCallError(f"{spec.name}() failed: {exc}") from exc
        except ToolCallError:
            sessions.tool_failures += 1
            raise
        observation: Observation = result.observation
        self._record(observation)
        return observation

    def end(self) -> None:
        """Give the session back (reopened first if it broke). Idempotent."""
        lease, self._lease, self._env = self._lease, None, None
        if lease is not None:
            lease.give_back()

    def _record(self, observation: Observation) -> None:
        if observation.reward is not None:
            self.rewards.append(float(observation.reward))
        self.done = observation.done
