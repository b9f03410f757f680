"""``EnvClient``: the sync twin of :class:`AsyncEnvClient`, for plain loops and scripts.

The two share everything but how they wait (``client.base``). Here a call is straight-line
blocking code on the calling thread: encode the request, write it, ``poll`` the session's
socket until the reply is in, decode it (``client.sync_connection``). No event loop runs
for it, and no other thread is woken.

Between calls the process's keepalive thread reads idle sessions, answering the server's pings
(``client.keepalive``). Calls on one session from several threads run one at a time.

A session belongs to the process that opened it: in a child made by ``fork()`` its calls
raise :class:`~openenv.InheritedSessionError`, and ``close()`` only lets go of it.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from types import TracebackType
from typing import Any, ClassVar, TypeVar, Unpack

from websockets.exceptions import ConnectionClosed, WebSocketException

from openenv.client.async_client import AsyncEnvClient
from openenv.client.base import CLOSE_TIMEOUT_S, STALE, BaseEnvClient, ClientOptions, Request
from openenv.client.portal import run_sync
from openenv.client.sync_connection import SyncConnection
from openenv.endpoint import Endpoint
from openenv.exceptions import (
    ConnectionLostError,
    InheritedSessionError,
    NotSupportedError,
    OpenEnvError,
)
from openenv.protocol import (
    CallTool,
    Close,
    Fork,
    ForkTickets,
    GetState,
    Hello,
    ListTools,
    ToolList,
)
from openenv.tools import Tool, ToolResult
from openenv.types import Action, Observation, State, StepResult, declare_types

__all__ = ["EnvClient"]

ActT = TypeVar("ActT", bound=Action)
ObsT = TypeVar("ObsT", bound=Observation)
StateT = TypeVar("StateT", bound=State)
SyncT = TypeVar("SyncT", bound="EnvClient[Any, Any, Any]")


class EnvClient(BaseEnvClient[ActT, ObsT, StateT]):
    """A blocking session with one env server, with the same methods as the async client.

    Each env ships a subclass naming its async twin (``EchoEnv`` names ``AsyncEchoEnv``); its
    generic arguments must be the twin's (checked when the class is defined). The options are
    the twin's (:class:`~openenv.client.base.ClientOptions`); ``on_close`` is called (and run
    to completion if it returns an awaitable).
    """

    async_client: ClassVar[type[AsyncEnvClient[Any, Any, Any]]] = AsyncEnvClient

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

    def __init__(self, endpoint: str | Endpoint, **options: Unpack[ClientOptions]) -> None:
        super().__init__(endpoint, **options)
        self._ws: SyncConnection | None = None
        self._lock = threading.Lock()  # a call's, and the keepalive's while it reads
        self._owner_pid = os.getpid()

    @property
    def usable(self) -> bool:
        """Whether the session can take another call: not closed, its connection (if opened)
        has not dropped, and this is the process that opened it."""
        if self._closed or self._lost or self._owner_pid != os.getpid():
            return False
        return self._ws is None or self._ws.is_open

    def connect(self) -> Hello:
        """Open the session now rather than on the first call; returns the greeting."""
        self._check_owner()
        with self._lock:
            self._connection()
        assert self._hello is not None
        return self._hello

    def reset(
        self, *, seed: int | None = None, episode_id: str | None = None, **options: Any
    ) -> StepResult[ObsT]:
        """Start a new episode; ``options`` go to the env's ``reset``."""
        return self._run(self._reset_request(seed, episode_id, options), True)  # type: ignore[no-any-return]

    def step(self, action: ActT) -> StepResult[ObsT]:
        """Apply ``action``; returns the observation, reward and done flag.

        Raises:
            ActionTypeError: ``action`` is not an instance of the client's ``action_type``
                (checked before anything is sent).
        """
        return self._run(self._step_request(action), True)  # type: ignore[no-any-return]

    def state(self) -> StateT:
        """The episode's state (id, step count and what the env adds)."""
        state: StateT = self._state_of(self._run(GetState(id=next(self._ids))))
        return state

    def list_tools(self) -> list[Tool]:
        """The env's tools; see ``AsyncEnvClient.list_tools``."""
        reply = self._run(ListTools(id=next(self._ids)))
        assert isinstance(reply, ToolList)
        return reply.tools

    def call_tool(self, name: str, /, **arguments: Any) -> StepResult[ToolResult]:
        """Call the env's tool ``name``, as a step; see ``AsyncEnvClient.call_tool``."""
        return self._run(CallTool(next(self._ids), name, arguments), True)  # type: ignore[no-any-return]

    def fork(self: SyncT) -> SyncT:
        """A new session whose env is a copy of this one's; see ``AsyncEnvClient.fork``."""
        (fork,) = self.fork_many(1)
        return fork

    def fork_many(self: SyncT, count: int) -> list[SyncT]:
        """``count`` forks of this session; see ``AsyncEnvClient.fork_many``. On failure none
        is left open."""
        forks: list[SyncT] = []
        try:
            for ticket in self.fork_tickets(count):
                forks.append(type(self)(self.endpoint, **self._forked_options(ticket)))
                forks[-1].connect()
        except BaseException:
            for fork in forks:
                fork.close()
            raise
        return forks

    def fork_tickets(self, count: int = 1) -> list[str]:
        """Tickets for ``count`` copies of this env; see ``AsyncEnvClient.fork_tickets``."""
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        if self._hello is None:
            self.connect()
        if self.dialect == "upstream":
            raise NotSupportedError(
                f"{self.endpoint} speaks upstream OpenEnv's dialect, which has no fork"
            )
        reply = self._run(Fork(id=next(self._ids), count=count))
        assert isinstance(reply, ForkTickets)
        return reply.tickets

    def close(self) -> None:
        """End the session and stop the server this client started, if any. Idempotent.

        In a process forked from the one that opened the session it only lets go of it: no
        close frame, and the server keeps running for the parent.
        """
        if self._closed:
            return
        self._closed = True
        ws, self._ws = self._ws, None
        if self._owner_pid != os.getpid():
            if ws is not None:
                ws.abort()  # this process's copy of the socket; the parent's stays open
            return
        try:
            if ws is not None:
                with self._lock:  # after a call in flight on another thread
                    _close_quietly(ws, self._codec.encode(Close(id=next(self._ids))))
        finally:
            if self._on_close is not None:
                outcome = self._on_close()
                if inspect.isawaitable(outcome):
                    run_sync(outcome)  # type: ignore[arg-type]

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

    # Internals.

    def _run(self, request: Request, step_result: bool = False) -> Any:
        if self._observed:
            with self._observing(request):
                return self._call(request, step_result)
        return self._call(request, step_result)

    def _call(self, request: Request, step_result: bool) -> Any:
        """Send ``request``, and return its reply (as a :class:`StepResult` if
        ``step_result``)."""
        self._check_owner()
        with self._lock:
            ws = self._ws if self._ws is not None and not self._closed else self._connection()
            seconds = self._deadline.seconds
            due = None if seconds is None else time.monotonic() + seconds
            try:
                frame = ws.request(self._encode_binary(request), due)
                answer = self._answer(frame, request.id, step_result)
                while answer is STALE:  # a late reply to an earlier call: dropped
                    answer = self._answer(ws.recv(due), request.id, step_result)
            except TimeoutError as exc:  # the reply may still come: the next call drops it
                self._abandon_if_lockstep()
                raise self._error(exc, request) from None
            except (ConnectionClosed, OSError) as exc:
                self._lost = True
                raise self._error(exc, request) from exc
            except OpenEnvError:  # the server's answer (an error reply): the session goes on
                raise
            except BaseException:  # Ctrl-C, say: as a timeout, and the interruption goes on
                self._abandon_if_lockstep()
                raise
        return answer

    def _abandon_if_lockstep(self) -> None:
        """After a call that got no reply: a dialect without ids cannot tell a late reply
        from the next call's, so the session is dropped (a pool replaces it)."""
        if getattr(self._codec, "lockstep", False):
            self._lost = True
            if self._ws is not None:
                self._ws.abort()

    def _check_owner(self) -> None:
        if self._owner_pid != os.getpid():
            raise InheritedSessionError(
                f"{self!r} was opened by process {self._owner_pid}, which forked this one: "
                f"open a session of this process's own (e.g. {type(self).__name__}(endpoint))",
                owner_pid=self._owner_pid,
            )

    def _connection(self) -> SyncConnection:
        if self._closed:
            raise ConnectionLostError(f"{self!r} is closed")
        if self._ws is None:
            self._ws = self._open()
        return self._ws

    def _open(self) -> SyncConnection:
        try:
            ws = SyncConnection.open(
                self.endpoint,
                headers=self._handshake_headers(),
                max_size=self.max_frame_bytes,
                open_timeout=self.connect_timeout,
                subprotocols=self._subprotocols,
                lock=self._lock,
            )
        except (OSError, WebSocketException) as exc:  # TimeoutError is an OSError
            raise self._error(exc) from exc
        if not self._speaks_ours(ws, ws.subprotocol):
            return ws
        try:
            self._hello = self._greeted(ws.recv(time.monotonic() + self.connect_timeout))
        except (TimeoutError, ConnectionClosed) as exc:
            ws.abort()
            raise self._error(exc) from exc
        except BaseException:
            ws.abort()
            raise
        return ws


def _close_quietly(ws: SyncConnection, close_frame: bytes) -> None:
    """Say goodbye if the connection still works; a dead one needs no ceremony."""
    if ws.is_open:
        try:
            ws.send(close_frame, time.monotonic() + CLOSE_TIMEOUT_S)
        except (ConnectionClosed, OSError):
            pass
        ws.close(CLOSE_TIMEOUT_S)
    else:
        ws.abort()
