"""``AsyncEnvClient``: one env session over one WebSocket, from asyncio code."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar, Unpack

from websockets.exceptions import ConnectionClosed, WebSocketException

from openenv.client.base import CLOSE_TIMEOUT_S, STALE, BaseEnvClient, ClientOptions, Request
from openenv.client.connection import Connection
from openenv.client.turns import Turns
from openenv.endpoint import Endpoint
from openenv.exceptions import ActionTypeError, ConnectionLostError, NotSupportedError
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

__all__ = ["AsyncEnvClient"]

ActT = TypeVar("ActT", bound=Action)
ObsT = TypeVar("ObsT", bound=Observation)
StateT = TypeVar("StateT", bound=State)
ClientT = TypeVar("ClientT", bound="AsyncEnvClient[Any, Any, Any]")


class AsyncEnvClient(BaseEnvClient[ActT, ObsT, StateT]):
    """A session with one env server: ``reset``, ``step``, ``state``, ``close``.

    Each env ships a subclass that names its types as generic arguments (``AsyncEchoEnv``); the
    base class works with any server, decoding into the base :class:`Observation` and
    :class:`State`. This class knows endpoints only; ``openenv.launch`` adds the constructors
    that start a server first (``from_process``, ``from_docker_image``). Calls on one
    client run one at a time; each has a timeout, and a reply that arrives after its call timed
    out or was cancelled is recognised by its request id and dropped.

    The constructor's arguments (shared with the sync twin) are :class:`BaseEnvClient`'s;
    ``on_close`` is awaited.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declare_types(cls, AsyncEnvClient)

    def __init__(self, endpoint: str | Endpoint, **options: Unpack[ClientOptions]) -> None:
        super().__init__(endpoint, **options)
        self._ws: Connection | None = None
        self._turns = Turns()

    # The session.

    async def connect(self) -> Hello:
        """Open the session now rather than on the first call; returns the greeting."""
        async with self._turns:
            await self._connection()
        assert self._hello is not None
        return self._hello

    def reset(
        self, *, seed: int | None = None, episode_id: str | None = None, **options: Any
    ) -> Coroutine[Any, Any, StepResult[ObsT]]:
        """Start a new episode; ``options`` go to the env's ``reset``. (A coroutine to await.)"""
        request = self._reset_request(seed, episode_id, options)
        if self._observed:
            return self._observed_call(request, True)
        return self._call(request, step_result=True)

    def step(self, action: ActT) -> Coroutine[Any, Any, StepResult[ObsT]]:
        """Apply ``action``; returns the observation, reward and done flag. (A coroutine to
        await: the call's own, with no second coroutine around it on the hot path.)

        Raises:
            ActionTypeError: ``action`` is not an instance of the client's ``action_type``
                (checked before anything is sent). A generic client (base ``Action``)
                sends anything the codec encodes, e.g. a dict for an upstream server.
        """
        try:
            request = self._step_request(action)
        except ActionTypeError as exc:
            return _raising(exc)  # raised where it is awaited, as from an ``async def``
        if self._observed:
            return self._observed_call(request, True)
        return self._call(request, step_result=True)

    async def state(self) -> StateT:
        """The episode's state (id, step count and what the env adds)."""
        request = GetState(id=next(self._ids))
        reply = await (self._observed_call(request) if self._observed else self._call(request))
        state: StateT = self._state_of(reply)
        return state

    async def list_tools(self) -> list[Tool]:
        """The env's tools: name, description and JSON Schemas of arguments and result (none
        for an env without tools). Needs no reset."""
        request = ListTools(id=next(self._ids))
        reply = await (self._observed_call(request) if self._observed else self._call(request))
        assert isinstance(reply, ToolList)
        return reply.tools

    def call_tool(
        self, name: str, /, **arguments: Any
    ) -> Coroutine[Any, Any, StepResult[ToolResult]]:
        """Call the env's tool ``name`` with ``arguments``, as a step (after a reset): the
        result's observation is a :class:`~openenv.tools.ToolResult` carrying the tool's
        return value (``result``) or the error it raised (``error``), with the step's reward
        and done flag. (A coroutine to await.)

        Raises:
            InvalidActionError: no tool of that name, or the arguments do not fit its schema
                (the message names the argument); checked before the tool runs.
        """
        request = CallTool(next(self._ids), name, arguments)
        if self._observed:
            return self._observed_call(request, True)
        return self._call(request, step_result=True)

    async def fork(self: ClientT) -> ClientT:
        """A new session on the same server whose env is a copy of this one's as it is now.

        Both then go their own way: steps on one are not seen by the other. The fork continues
        this session's episode (no reset needed) and counts as a session of the server; closing
        it never stops the server (that stays with this client).

        Raises:
            NotSupportedError: the env cannot copy itself.
            CapacityError: the server has no free session slot for the fork.
        """
        (fork,) = await self.fork_many(1)
        return fork

    async def fork_many(self: ClientT, count: int) -> list[ClientT]:
        """``count`` forks of this session (one request, one copy each), e.g. for a GRPO group
        sharing a prefix; see :meth:`fork`. On failure none is left open."""
        tickets = await self.fork_tickets(count)
        forks = [self._forked(ticket) for ticket in tickets]
        opened = await asyncio.gather(*(fork.connect() for fork in forks), return_exceptions=True)
        failures = [outcome for outcome in opened if isinstance(outcome, BaseException)]
        if failures:
            await asyncio.gather(*(fork.close() for fork in forks), return_exceptions=True)
            raise failures[0]
        return forks

    async def fork_tickets(self, count: int = 1) -> list[str]:
        """Copy the env ``count`` times on the server and return one ticket per copy.

        A ticket opens a session on its copy once (``AsyncEnvClient(endpoint, ticket=t)``,
        from any process that reaches the server; no token needed), within the server's ticket
        lifetime (10 s by default); an unused copy is then dropped.
        """
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        if self._hello is None:
            await self.connect()
        if self.dialect == "upstream":
            raise NotSupportedError(
                f"{self.endpoint} speaks upstream OpenEnv's dialect, which has no fork"
            )
        request = Fork(id=next(self._ids), count=count)
        reply = await (self._observed_call(request) if self._observed else self._call(request))
        assert isinstance(reply, ForkTickets)
        return reply.tickets

    def _forked(self: ClientT, ticket: str) -> ClientT:
        return type(self)(self.endpoint, **self._forked_options(ticket))

    async def close(self) -> None:
        """End the session and stop the server this client started, if any. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._ws is not None:
                await _close_quietly(self._ws, self._codec.encode(Close(id=next(self._ids))))
        finally:
            self._ws = None
            if self._on_close is not None:
                await self._on_close()

    @property
    def usable(self) -> bool:
        """Whether the session can take another call: not closed, and its connection (if
        opened) has not dropped. A pool replaces envs that are not usable."""
        if self._closed or self._lost:
            return False
        return self._ws is None or self._ws.is_open

    async def __aenter__(self: ClientT) -> ClientT:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # Internals.

    async def _observed_call(self, request: Request, step_result: bool = False) -> Any:
        """:meth:`_call`, traced and counted (see ``BaseEnvClient._observing``)."""
        with self._observing(request):
            return await self._call(request, step_result)

    async def _call(self, request: Request, step_result: bool = False) -> Any:
        """Send ``request``, and return its reply (as a :class:`StepResult` if
        ``step_result``)."""
        # The turn taken and given back inline rather than ``async with``: two coroutine
        # frames fewer per step.
        turns = self._turns
        if turns.busy:
            await turns.wait()
        turns.busy = True
        try:
            ws = self._ws if self._ws is not None and not self._closed else await self._connection()
            self._deadline.start()  # it ends when the reply is in
            frame = await ws.request(self._encode_binary(request))
            answer = self._answer(frame, request.id, step_result)
            while answer is STALE:  # a late reply to an earlier call: dropped
                answer = self._answer(await ws.recv(), request.id, step_result)
        except asyncio.CancelledError:
            if getattr(self._codec, "lockstep", False):
                self._abandon()  # no ids: a late reply would pass for the next one's
            if self._deadline.expired():
                raise self._error(TimeoutError(), request) from None
            raise
        except (ConnectionClosed, OSError) as exc:
            self._lost = True
            raise self._error(exc, request) from exc
        finally:
            turns.release()
        return answer

    def _abandon(self) -> None:
        """Drop the connection: the session can no longer be trusted (a pool replaces it)."""
        self._lost = True
        if self._ws is not None:
            self._ws.abort()

    async def _connection(self) -> Connection:
        if self._closed:
            raise ConnectionLostError(f"{self!r} is closed")
        if self._ws is None:
            self._ws = await self._open()
        return self._ws

    async def _open(self) -> Connection:
        try:
            ws = await Connection.open(
                self.endpoint,
                headers=self._handshake_headers(),
                max_size=self.max_frame_bytes,
                open_timeout=self.connect_timeout,
                subprotocols=self._subprotocols,
            )
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise self._error(exc) from exc
        self._deadline.bind(asyncio.get_running_loop(), ws.interrupt)
        if not self._speaks_ours(ws, ws.subprotocol):
            return ws
        try:
            async with asyncio.timeout(self.connect_timeout):
                self._hello = self._greeted(await ws.recv())
        except (TimeoutError, ConnectionClosed) as exc:
            ws.abort()
            raise self._error(exc) from exc
        except BaseException:
            ws.abort()
            raise
        return ws


async def _raising(error: Exception) -> Any:
    """A coroutine that raises ``error`` when awaited (as an ``async def`` method would)."""
    raise error


async def _close_quietly(ws: Connection, close_frame: bytes) -> None:
    """Say goodbye if the connection still works; a dead one needs no ceremony."""
    if ws.is_open:
        ws.send(close_frame)
        await ws.close(close_timeout=CLOSE_TIMEOUT_S)
    else:
        ws.abort()
