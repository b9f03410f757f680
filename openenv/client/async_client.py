"""``AsyncEnvClient``: one env session over one WebSocket, from asyncio code."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Coroutine
from time import perf_counter
from types import TracebackType
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import urlsplit

from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from openenv.client.connection import Connection
from openenv.client.deadline import Deadline
from openenv.client.turns import Turns
from openenv.client.upstream import UPSTREAM_HELLO, UpstreamClientCodec
from openenv.endpoint import Endpoint
from openenv.exceptions import (
    ActionTypeError,
    AuthenticationError,
    ConnectError,
    ConnectionLostError,
    EnvMismatchError,
    EnvTimeoutError,
    NotSupportedError,
    ProtocolError,
    VersionMismatchError,
    remote_error,
)
from openenv.observability import tracing
from openenv.observability.calls import CallMetrics
from openenv.protocol import (
    PROTOCOL_VERSION,
    SUBPROTOCOL,
    CallTool,
    Close,
    Codec,
    Error,
    Fork,
    ForkTickets,
    FrameError,
    GetState,
    Hello,
    ListTools,
    Reset,
    StateReply,
    Step,
    ToolList,
    fork_authorization,
    reply_type,
)
from openenv.tools import Tool, ToolResult
from openenv.types import (
    Action,
    GenericObservation,
    GenericState,
    Observation,
    State,
    StepResult,
    declare_types,
)

__all__ = ["AsyncEnvClient", "OffLoop"]

ActT = TypeVar("ActT", bound=Action)
ObsT = TypeVar("ObsT", bound=Observation)
StateT = TypeVar("StateT", bound=State)
ClientT = TypeVar("ClientT", bound="AsyncEnvClient[Any, Any, Any]")

DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
_Request = Reset | Step[Any] | GetState | ListTools | CallTool | Fork
_PROTOCOLS = ("auto", "openenv", "upstream")


class AsyncEnvClient(Generic[ActT, ObsT, StateT]):
    """A session with one env server: ``reset``, ``step``, ``state``, ``close``.

    Each env ships a subclass that names its types as generic arguments (``AsyncEchoEnv``); the
    base class works with any server, decoding into the base :class:`Observation` and
    :class:`State`. This class knows endpoints only; ``openenv.launch`` adds the constructors
    that start a server first (``from_process``, ``from_docker_image``). Calls on one
    client run one at a time; each has a timeout, and a reply that arrives after its call timed
    out or was cancelled is recognised by its request id and dropped.

    Args:
        endpoint: ``ws://host:port``, ``unix:///path.sock`` or an :class:`Endpoint`.
        token: bearer token, if the server wants one (overrides the endpoint's).
        connect_timeout: seconds to open the connection and receive the greeting.
        timeout: seconds each call may take (None: no limit).
        max_frame_bytes: largest reply accepted.
        on_close: awaited after the session closes; providers use it to stop the server they
            started for this client.
        protocol: ``"auto"`` (ours when the server accepts our subprotocol, else upstream
            OpenEnv's dialect), ``"openenv"`` (ours, or :class:`ConnectError`) or
            ``"upstream"`` (upstream's, also against our servers). What upstream's dialect
            loses is listed in ``openenv.client.upstream``.
        ticket: a fork ticket (from :meth:`fork_tickets`): the session opens on that forked
            copy of another session's env, presenting the ticket instead of the token.
        metrics: counts this client's calls and their latency (shared by many clients; see
            ``openenv.observability.calls``). Forks of this session share it.

    Calls are traced (OpenTelemetry spans, their context sent to the server) when the
    application configured an OpenTelemetry SDK before the session opened.
    """

    action_type: ClassVar[type[Action]] = Action
    observation_type: ClassVar[type[Observation]] = Observation
    state_type: ClassVar[type[State]] = State

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declare_types(cls, AsyncEnvClient)

    def __init__(
        self,
        endpoint: str | Endpoint,
        *,
        token: str | None = None,
        connect_timeout: float = 10.0,
        timeout: float | None = 60.0,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        on_close: Callable[[], Awaitable[None]] | None = None,
        protocol: str = "auto",
        ticket: str | None = None,
        metrics: CallMetrics | None = None,
    ) -> None:
        if protocol not in _PROTOCOLS:
            raise ValueError(f"protocol must be one of {_PROTOCOLS}, not {protocol!r}")
        self.protocol = protocol
        if isinstance(endpoint, str):
            endpoint = Endpoint.parse(endpoint)
        self.endpoint = endpoint if token is None else endpoint.with_token(token)
        self.connect_timeout = connect_timeout
        self.max_frame_bytes = max_frame_bytes
        self._on_close = on_close
        self._ticket = ticket
        self._codec = _codec_for(*_wire_types(self.observation_type, self.state_type))
        self._decode_binary, self._encode_binary = self._codec.binary_codec
        self._ws: Connection | None = None
        self._hello: Hello | None = None
        self._ids = itertools.count(1)
        self._turns = Turns()
        self._deadline = Deadline(timeout)
        self._closed = False
        self._lost = False  # the connection dropped under a call
        self.metrics = metrics
        self._tracer = tracing.tracer("openenv.client")
        self._observed = metrics is not None or self._tracer is not None

    # The session.

    @property
    def hello(self) -> Hello | None:
        """The server's greeting (env name, protocol, schemas) once connected."""
        return self._hello

    @property
    def dialect(self) -> str | None:
        """``"openenv"`` or ``"upstream"``: what the session speaks, once connected."""
        if self._hello is None:
            return None
        return "upstream" if self._hello is UPSTREAM_HELLO else "openenv"

    @property
    def timeout(self) -> float | None:
        """Seconds each call may take (None: no limit)."""
        return self._deadline.seconds

    @timeout.setter
    def timeout(self, seconds: float | None) -> None:
        self._deadline.seconds = seconds

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
        request = Reset(id=next(self._ids), seed=seed, episode_id=episode_id, options=options)
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
        expected = self.action_type
        if (
            action.__class__ is not expected
            and expected is not Action
            and not isinstance(action, expected)
        ):
            return _raising(_wrong_action(expected, action))
        if self._observed:
            return self._observed_call(Step(next(self._ids), action), True)
        return self._call(Step(next(self._ids), action), step_result=True)

    async def state(self) -> StateT:
        """The episode's state (id, step count and what the env adds)."""
        request = GetState(id=next(self._ids))
        reply = await (self._observed_call(request) if self._observed else self._call(request))
        assert isinstance(reply, StateReply)
        state: Any = reply.state
        if state.__class__ is dict:  # a generic client: the env's own fields kept
            state = GenericState.of(state)
        typed: StateT = state
        return typed

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
        return type(self)(
            self.endpoint,
            connect_timeout=self.connect_timeout,
            timeout=self.timeout,
            max_frame_bytes=self.max_frame_bytes,
            protocol="openenv",
            ticket=ticket,
            metrics=self.metrics,
        )

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
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed

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

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.endpoint}>"

    # Internals.

    async def _observed_call(self, request: _Request, step_result: bool = False) -> Any:
        """:meth:`_call`, in a span whose context travels with the request, and counted."""
        kind = _KINDS[type(request)]
        metrics, tracer = self.metrics, self._tracer
        began = perf_counter()
        try:
            if tracer is None:
                return await self._call(request, step_result)
            hello = self._hello
            attributes = {"openenv.request_id": request.id, "server.address": str(self.endpoint)}
            if hello is not None:
                attributes |= {"openenv.env": hello.env, "openenv.session_id": hello.session_id}
            with tracer.start_as_current_span(
                f"openenv.{kind}", kind=tracing.CLIENT, attributes=attributes
            ):
                request.trace = tracing.carrier()
                return await self._call(request, step_result)
        except BaseException:
            if metrics is not None:
                metrics.failures[kind] += 1
            raise
        finally:
            if metrics is not None:
                metrics.latency[kind].record(perf_counter() - began)

    async def _call(self, request: _Request, step_result: bool = False) -> Any:
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
            try:  # the hot path: one msgspec call
                reply = self._decode_binary(frame)  # type: ignore[arg-type]
            except Exception:
                reply = self._decode(frame)  # a text frame, or says what is wrong
            while getattr(reply, "id", None) != request.id:
                # Replies to earlier calls that timed out or were cancelled are dropped.
                _check_stale(reply, request.id)
                reply = self._decode(await ws.recv())
        except asyncio.CancelledError:
            if getattr(self._codec, "lockstep", False):
                self._abandon()  # no ids: a late reply would pass for the next one's
            if self._deadline.expired():
                raise _timeout_error(request, self.timeout, self.endpoint) from None
            raise
        except ConnectionClosed as exc:
            self._lost = True
            raise _connection_lost(exc, self.endpoint) from exc
        except OSError as exc:
            self._lost = True
            raise ConnectionLostError(f"connection to {self.endpoint} failed: {exc}") from exc
        finally:
            turns.release()
        if reply.__class__ is Error:
            raise remote_error(reply.code, reply.message, reply.id)
        if not step_result:
            return reply
        observation = reply.observation
        if observation.__class__ is dict:  # a generic client: the env's own fields kept
            observation = GenericObservation.of(observation)
        return StepResult(observation)

    def _abandon(self) -> None:
        """Drop the connection: the session can no longer be trusted (a pool replaces it)."""
        self._lost = True
        if self._ws is not None:
            self._ws.abort()

    def _decode(self, frame: bytes | str) -> Any:
        try:
            return self._codec.decode(frame)
        except FrameError as exc:
            raise ProtocolError(f"undecodable reply from {self.endpoint}: {exc}") from exc

    async def _connection(self) -> Connection:
        if self._closed:
            raise ConnectionLostError(f"{self!r} is closed")
        if self._ws is None:
            self._ws = await self._open()
        return self._ws

    async def _open(self) -> Connection:
        endpoint = self.endpoint
        headers = {"User-Agent": "openenv"}
        if self._ticket is not None:
            headers["Authorization"] = fork_authorization(self._ticket)
        elif endpoint.token:
            headers["Authorization"] = f"Bearer {endpoint.token}"
        try:
            ws = await Connection.open(
                endpoint,
                headers=headers,
                max_size=self.max_frame_bytes,
                open_timeout=self.connect_timeout,
                subprotocols=None if self.protocol == "upstream" else [SUBPROTOCOL],
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 404:
                path = urlsplit(endpoint.url).path
                raise ConnectError(
                    f"{endpoint} has no WebSocket route at {path} (HTTP 404): "
                    "is this an env server, and is the path right?",
                    status=status,
                ) from exc
            if status in (401, 403) and self._ticket is not None:
                raise AuthenticationError(
                    f"{endpoint} refused the fork ticket (HTTP {status}): it was used already, "
                    "expired, or comes from another server",
                    status=status,
                ) from exc
            if status in (401, 403):
                raise AuthenticationError(
                    f"{endpoint} refused the session (HTTP {status}): missing or wrong token",
                    status=status,
                ) from exc
            raise ConnectError(
                f"{endpoint} refused the session (HTTP {status})", status=status
            ) from exc
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise ConnectError(
                f"cannot connect to {endpoint}: {exc or type(exc).__name__}"
            ) from exc
        self._deadline.bind(asyncio.get_running_loop(), ws.interrupt)
        if ws.subprotocol != SUBPROTOCOL:
            return self._speak_upstream(ws)
        try:
            self._hello = await self._greeting(ws)
        except BaseException:
            ws.abort()
            raise
        return ws

    def _speak_upstream(self, ws: Connection) -> Connection:
        """Switch this session to upstream OpenEnv's dialect: JSON text, no greeting, no ids."""
        if self.protocol == "openenv":
            ws.abort()
            raise ConnectError(
                f"{self.endpoint} does not speak openenv's protocol (subprotocol "
                f"{SUBPROTOCOL} refused); pass protocol='auto' or 'upstream' for upstream OpenEnv"
            )
        ws.use_text_frames()
        self._codec = UpstreamClientCodec(  # type: ignore[assignment]
            *_wire_types(self.observation_type, self.state_type)
        )
        self._decode_binary, self._encode_binary = self._codec.decode, self._codec.encode
        self._hello = UPSTREAM_HELLO
        return ws

    async def _greeting(self, ws: Connection) -> Hello:
        try:
            async with asyncio.timeout(self.connect_timeout):
                greeting = self._decode(await ws.recv())
        except TimeoutError:
            raise ConnectError(
                f"{self.endpoint} sent no greeting within {self.connect_timeout} s"
            ) from None
        except ConnectionClosed as exc:
            raise ConnectError(_connection_lost(exc, self.endpoint).args[0]) from exc
        if isinstance(greeting, Error):
            raise remote_error(greeting.code, greeting.message)
        if not isinstance(greeting, Hello):
            raise ProtocolError(f"expected a greeting from {self.endpoint}, got {greeting!r}")
        if greeting.protocol != PROTOCOL_VERSION:
            raise VersionMismatchError(
                f"{self.endpoint} speaks protocol {greeting.protocol}, "
                f"this client speaks {PROTOCOL_VERSION}",
                server_version=greeting.protocol,
                client_version=PROTOCOL_VERSION,
            )
        self._check_env(greeting)
        return greeting

    def _check_env(self, hello: Hello) -> None:
        """Fail at connect when the server serves another env than this client's types say.

        Compared by the names of the action and observation types in the greeting's schemas
        (once per session, not per step). A client with the base ``Action`` type (a generic
        ``AsyncEnvClient``) talks to any env and checks nothing.
        """
        if self.action_type is Action:
            return
        for mine, schema in (
            (self.action_type, hello.action_schema),
            (self.observation_type, hello.observation_schema),
        ):
            theirs = _schema_name(schema)
            if theirs is not None and theirs != mine.__name__:
                server_action = _schema_name(hello.action_schema) or "?"
                raise EnvMismatchError(
                    f"{type(self).__name__} expects an env whose action is "
                    f"{self.action_type.__name__}, but {self.endpoint} serves {hello.env} "
                    f"(action {server_action}): connect the client of that env, or start the "
                    "right image",
                    expected=self.action_type.__name__,
                    actual=server_action,
                    server_env=hello.env,
                )


class OffLoop:
    """Runs a session's calls off its event loop, for a thread that owns the loop while it is
    stopped (a sync client's call, see ``client.portal``): the call's coroutine is stepped by
    that thread, and its waits for replies block on the socket (:meth:`Connection.wait_off_loop`),
    under the session's time limit.
    """

    __slots__ = ("_client",)

    # A reply that takes longer is awaited on the loop: other sessions on it (other sync
    # clients of the thread) must go on answering their servers' pings during a long call.
    PATIENCE_S = 0.05

    def __init__(self, client: AsyncEnvClient[Any, Any, Any]) -> None:
        self._client = client

    def ready(self) -> bool:
        """Whether a call can start off the loop now: connected, and no call in flight (so
        it awaits nothing but its reply)."""
        client = self._client
        return client._ws is not None and not client._closed and not client._turns.busy

    def wait(self, future: asyncio.Future[Any]) -> bool:
        """Block until ``future`` is done, or interrupt the call past its time limit (it then
        raises :class:`EnvTimeoutError`). False when the loop is to resolve it (the reply is
        slow, or only the loop can go on): the deadline's own timer then holds on the loop."""
        client = self._client
        ws, deadline = client._ws, client._deadline
        if ws is None or not ws.wait_off_loop(future, deadline.due, self.PATIENCE_S):
            return False
        if not future.done():
            deadline.lapse()
        return True


_CODECS: dict[tuple[type[Any], type[Any]], Codec] = {}


def _wire_types(observation_type: type[Any], state_type: type[Any]) -> tuple[Any, Any]:
    """What replies decode into: a generic client's (base types) decode into dicts first,
    made :class:`GenericObservation` / :class:`GenericState` keeping every field."""
    return (
        dict[str, Any] if observation_type is Observation else observation_type,
        dict[str, Any] if state_type is State else state_type,
    )


def _codec_for(observation_type: type[Any], state_type: type[Any]) -> Codec:
    """One codec per env type pair, shared by every client of that env."""
    key = (observation_type, state_type)
    if key not in _CODECS:
        _CODECS[key] = Codec(reply_type(observation_type, state_type))
    return _CODECS[key]


def _schema_name(schema: dict[str, Any]) -> str | None:
    """The type name a msgspec JSON Schema refers to (``#/$defs/EchoAction`` -> EchoAction)."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return ref.rsplit("/", 1)[-1]
    title = schema.get("title")
    return title if isinstance(title, str) else None


def _wrong_action(expected: type[Action], action: object) -> ActionTypeError:
    actual = type(action)
    return ActionTypeError(
        f"step() expected {expected.__name__}, got {actual.__name__}",
        expected=expected,
        actual=actual,
    )


def _check_stale(reply: Any, request_id: int) -> None:
    """Let a reply to an earlier request pass (to be dropped); anything else is a violation."""
    reply_id = getattr(reply, "id", None)
    if isinstance(reply, Error) and reply_id is None:
        raise remote_error(reply.code, reply.message)  # a session-level error, e.g. capacity
    if reply_id is None or reply_id > request_id:
        raise ProtocolError(f"reply {reply!r} does not answer request {request_id}")


async def _raising(error: Exception) -> Any:
    """A coroutine that raises ``error`` when awaited (as an ``async def`` method would)."""
    raise error


_REQUEST_NAMES = {
    Reset: "reset",
    Step: "step",
    GetState: "get_state",
    ListTools: "list_tools",
    CallTool: "call_tool",
    Fork: "fork",
}
_KINDS = {  # metrics and spans
    Reset: "reset",
    Step: "step",
    GetState: "state",
    ListTools: "tool",
    CallTool: "tool",
    Fork: "fork",
}


def _timeout_error(request: _Request, timeout: float | None, endpoint: Endpoint) -> EnvTimeoutError:
    name = _REQUEST_NAMES[type(request)]
    return EnvTimeoutError(
        f"no reply to {name} within {timeout} s from {endpoint}",
        timeout=timeout,
        request=name,
        request_id=request.id,
    )


def _connection_lost(exc: ConnectionClosed, endpoint: Endpoint) -> ConnectionLostError:
    frame = exc.rcvd or exc.sent
    if frame is None:
        return ConnectionLostError(
            f"connection to {endpoint} dropped without a close frame (server gone?)"
        )
    reason = f": {frame.reason}" if frame.reason else ""
    return ConnectionLostError(
        f"{endpoint} closed the session (code {frame.code}{reason})",
        code=frame.code,
        reason=frame.reason,
    )


async def _close_quietly(ws: Connection, close_frame: bytes) -> None:
    """Say goodbye if the connection still works; a dead one needs no ceremony."""
    if ws.is_open:
        ws.send(close_frame)
        await ws.close(close_timeout=2.0)
    else:
        ws.abort()
