"""``EnvClient``: the sync twin of :class:`AsyncEnvClient`, for plain loops and scripts.

Every method runs the async client's method of the same name on one shared event loop; there is
no second implementation of the protocol here. ``reset``, ``step`` and ``state`` on an open
session run off that loop, blocking on the socket (see ``client.portal``).
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any, ClassVar, Generic, TypeVar

from openenv.client.async_client import DEFAULT_MAX_FRAME_BYTES, AsyncEnvClient, OffLoop
from openenv.client.portal import run_sync
from openenv.endpoint import Endpoint
from openenv.exceptions import InheritedSessionError
from openenv.protocol import Hello
from openenv.tools import Tool, ToolResult
from openenv.types import Action, Observation, State, StepResult, declare_types

__all__ = ["EnvClient"]

ActT = TypeVar("ActT", bound=Action)
ObsT = TypeVar("ObsT", bound=Observation)
StateT = TypeVar("StateT", bound=State)
SyncT = TypeVar("SyncT", bound="EnvClient[Any, Any, Any]")


class EnvClient(Generic[ActT, ObsT, StateT]):
    """A blocking session with one env server, with the same methods as the async client.

    Each env ships a subclass naming its async twin (``EchoEnv`` wraps ``AsyncEchoEnv``); its
    generic arguments must be the twin's (checked when the class is defined). The constructor
    takes the same arguments as :class:`AsyncEnvClient`.
    """

    async_client: ClassVar[type[AsyncEnvClient[Any, Any, Any]]] = AsyncEnvClient
    action_type: ClassVar[type[Action]] = Action
    observation_type: ClassVar[type[Observation]] = Observation
    state_type: ClassVar[type[State]] = State

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declare_types(cls, EnvClient)
        twin = cls.async_client
        for attribute in ("action_type", "observation_type", "state_type"):
            mine, theirs = getattr(cls, attribute), getattr(twin, attribute)
            if mine is not theirs and mine not in (Action, Observation, State):
                raise TypeError(
                    f"{cls.__name__}.{attribute} is {mine.__name__} but its async_client "
                    f"{twin.__name__} has {theirs.__name__}"
                )

    def __init__(
        self,
        endpoint: str | Endpoint,
        *,
        token: str | None = None,
        connect_timeout: float = 10.0,
        timeout: float | None = 60.0,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        self._attach(
            self.async_client(
                endpoint,
                token=token,
                connect_timeout=connect_timeout,
                timeout=timeout,
                max_frame_bytes=max_frame_bytes,
            )
        )

    def _attach(self, client: AsyncEnvClient[Any, Any, Any]) -> None:
        self._async: AsyncEnvClient[ActT, ObsT, StateT] = client
        self._off_loop = OffLoop(client)
        self._owner_pid = os.getpid()
        self._abandoned = False  # closed in a forked child: let go of, never closed

    def _mine(self) -> AsyncEnvClient[ActT, ObsT, StateT]:
        """The async twin, unless this process is a fork of the one that opened the session."""
        if os.getpid() != self._owner_pid:
            raise InheritedSessionError(
                f"{self!r} was opened by process {self._owner_pid}, which forked this one: "
                f"open a session of this process's own (e.g. {type(self).__name__}(endpoint))",
                owner_pid=self._owner_pid,
            )
        return self._async

    @classmethod
    def wrap(cls: type[SyncT], client: AsyncEnvClient[Any, Any, Any]) -> SyncT:
        """A sync client over an existing async one (which must belong to the sync loop)."""
        sync = cls.__new__(cls)
        sync._attach(client)
        return sync

    @property
    def endpoint(self) -> Endpoint:
        """Where the server listens."""
        return self._async.endpoint

    @property
    def hello(self) -> Hello | None:
        """The server's greeting once connected."""
        return self._async.hello

    @property
    def dialect(self) -> str | None:
        """``"openenv"`` or ``"upstream"``: what the session speaks, once connected."""
        return self._async.dialect

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._async.closed or self._abandoned

    @property
    def timeout(self) -> float | None:
        """Seconds each call may take (None: no limit)."""
        return self._async.timeout

    @timeout.setter
    def timeout(self, seconds: float | None) -> None:
        self._async.timeout = seconds

    @property
    def usable(self) -> bool:
        """Whether the session can take another call (never in a forked child)."""
        return os.getpid() == self._owner_pid and self._async.usable

    def connect(self) -> Hello:
        """Open the session now rather than on the first call."""
        return run_sync(self._mine().connect())

    def reset(
        self, *, seed: int | None = None, episode_id: str | None = None, **options: Any
    ) -> StepResult[ObsT]:
        """Start a new episode."""
        reset = self._mine().reset(seed=seed, episode_id=episode_id, **options)
        return run_sync(reset, self._off_loop)

    def step(self, action: ActT) -> StepResult[ObsT]:
        """Apply ``action``."""
        return run_sync(self._mine().step(action), self._off_loop)

    def state(self) -> StateT:
        """The episode's state."""
        return run_sync(self._mine().state(), self._off_loop)

    def list_tools(self) -> list[Tool]:
        """The env's tools; see ``AsyncEnvClient.list_tools``."""
        return run_sync(self._async.list_tools(), self._off_loop)

    def call_tool(self, name: str, /, **arguments: Any) -> StepResult[ToolResult]:
        """Call the env's tool ``name``, as a step; see ``AsyncEnvClient.call_tool``."""
        return run_sync(self._async.call_tool(name, **arguments), self._off_loop)

    def fork(self: SyncT) -> SyncT:
        """A new session whose env is a copy of this one's; see ``AsyncEnvClient.fork``."""
        return self.wrap(run_sync(self._mine().fork()))

    def fork_many(self: SyncT, count: int) -> list[SyncT]:
        """``count`` forks of this session; see ``AsyncEnvClient.fork_many``."""
        return [self.wrap(fork) for fork in run_sync(self._mine().fork_many(count))]

    def fork_tickets(self, count: int = 1) -> list[str]:
        """Tickets for ``count`` copies of this env; see ``AsyncEnvClient.fork_tickets``."""
        return run_sync(self._mine().fork_tickets(count))

    def close(self) -> None:
        """End the session and stop the server this client started, if any. In a forked child
        it only lets go of the parent's session (see :class:`InheritedSessionError`)."""
        if os.getpid() != self._owner_pid:
            self._abandoned = True
            return
        run_sync(self._async.close())

    def __enter__(self: SyncT) -> SyncT:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.endpoint}>"
