"""What the async and sync clients share: options, requests, replies, greetings, errors.

:class:`AsyncEnvClient` and :class:`EnvClient` are twins over one base, as httpx's clients are:
everything here is free of I/O (building a request, matching a reply to it, checking the
server's greeting, naming a failure); each twin adds only how it waits (on an event loop, or
blocked on the socket).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from time import perf_counter
from typing import Any, ClassVar, Generic, Literal, Protocol, TypedDict, TypeVar, Unpack
from urllib.parse import urlsplit

from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from openenv.client.deadline import Deadline
from openenv.client.upstream import UPSTREAM_HELLO, UpstreamClientCodec
from openenv.endpoint import Endpoint
from openenv.exceptions import (
    ActionTypeError,
    AuthenticationError,
    ConnectError,
    ConnectionLostError,
    EnvMismatchError,
    EnvTimeoutError,
    OpenEnvError,
    ProtocolError,
    VersionMismatchError,
    remote_error,
)
from openenv.observability import tracing
from openenv.observability.calls import CallMetrics
from openenv.protocol import (
    PROTOCOL_VERSION,
    REQUEST_KINDS,
    SUBPROTOCOL,
    CallTool,
    Codec,
    Error,
    Fork,
    FrameError,
    GetState,
    Hello,
    ListTools,
    Reset,
    StateReply,
    Step,
    fork_authorization,
    reply_type,
)
from openenv.types import (
    Action,
    GenericObservation,
    GenericState,
    Observation,
    State,
    StepResult,
)

__all__ = [
    "CLOSE_TIMEOUT_S",
    "DEFAULT_MAX_FRAME_BYTES",
    "STALE",
    "BaseEnvClient",
    "ClientOptions",
    "Request",
    "session_error",
]

ActT = TypeVar("ActT", bound=Action)
ObsT = TypeVar("ObsT", bound=Observation)
StateT = TypeVar("StateT", bound=State)

DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
CLOSE_TIMEOUT_S = 2.0  # for the closing handshake, after which the connection is dropped
_PROTOCOLS = ("auto", "openenv", "upstream")

Request = Reset | Step[Any] | GetState | ListTools | CallTool | Fork
STALE: Any = object()  # a reply to an earlier request, dropped (see ``BaseEnvClient._answer``)


class ClientOptions(TypedDict, total=False):
    """What both clients take besides the endpoint (``AsyncEchoEnv(endpoint, **options)``,
    ``EchoEnv(endpoint, **options)``); the defaults are in brackets.

    Attributes:
        token: bearer token, if the server wants one (overrides the endpoint's).
        connect_timeout: seconds to open the connection and receive the greeting (10).
        timeout: seconds each call may take (60; None: no limit).
        max_frame_bytes: largest reply accepted (16 MiB).
        on_close: called after the session closes (awaited by the async client); providers
            use it to stop the server they started for this client.
        protocol: ``"auto"`` (ours when the server accepts our subprotocol, else upstream
            OpenEnv's dialect), ``"openenv"`` (ours, or :class:`ConnectError`) or
            ``"upstream"`` (upstream's, also against our servers). What upstream's dialect
            loses is listed in ``openenv.client.upstream``.
        ticket: a fork ticket (from ``fork_tickets``): the session opens on that forked copy
            of another session's env, presenting the ticket instead of the token.
        metrics: counts this client's calls and their latency (shared by many clients; see
            ``openenv.observability.calls``). Forks of this session share it.
    """

    token: str | None
    connect_timeout: float
    timeout: float | None
    max_frame_bytes: int
    on_close: Callable[[], Any] | None
    protocol: Literal["auto", "openenv", "upstream"]
    ticket: str | None
    metrics: CallMetrics | None


class _Wire(Protocol):
    """What the base needs of either twin's connection."""

    def use_text_frames(self) -> None: ...

    def abort(self) -> None: ...


class BaseEnvClient(Generic[ActT, ObsT, StateT]):
    """The I/O-free half of a session (see the module's docstring); ``options`` are
    :class:`ClientOptions`.

    Calls are traced (OpenTelemetry spans, their context sent to the server) when the
    application configured an OpenTelemetry SDK before the session opened.
    """

    action_type: ClassVar[type[Action]] = Action
    observation_type: ClassVar[type[Observation]] = Observation
    state_type: ClassVar[type[State]] = State

    def __init__(self, endpoint: str | Endpoint, **options: Unpack[ClientOptions]) -> None:
        unknown = options.keys() - ClientOptions.__annotations__.keys()
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unknown options {sorted(unknown)}")
        protocol = options.get("protocol", "auto")
        if protocol not in _PROTOCOLS:
            raise ValueError(f"protocol must be one of {_PROTOCOLS}, not {protocol!r}")
        self.protocol = protocol
        if isinstance(endpoint, str):
            endpoint = Endpoint.parse(endpoint)
        token = options.get("token")
        self.endpoint = endpoint if token is None else endpoint.with_token(token)
        self.connect_timeout = options.get("connect_timeout", 10.0)
        self.max_frame_bytes = options.get("max_frame_bytes", DEFAULT_MAX_FRAME_BYTES)
        self.metrics = metrics = options.get("metrics")
        self._on_close = options.get("on_close")
        self._ticket = options.get("ticket")
        self._codec = _codec_for(*_wire_types(self.observation_type, self.state_type))
        self._decode_binary, self._encode_binary = self._codec.binary_codec
        self._hello: Hello | None = None
        self._ids = itertools.count(1)
        self._deadline = Deadline(options.get("timeout", 60.0))
        self._closed = False
        self._lost = False  # the connection dropped under a call
        self._tracer = tracing.tracer("openenv.client")
        self._observed = metrics is not None or self._tracer is not None

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

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self._closed

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.endpoint}>"

    # Requests and replies.

    def _reset_request(self, seed: int | None, episode_id: str | None, options: Any) -> Reset:
        return Reset(id=next(self._ids), seed=seed, episode_id=episode_id, options=options)

    def _step_request(self, action: ActT) -> Step[Any]:
        """The request for ``step(action)``.

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
            actual = type(action)
            raise ActionTypeError(
                f"step() expected {expected.__name__}, got {actual.__name__}",
                expected=expected,
                actual=actual,
            )
        return Step(next(self._ids), action)

    def _answer(self, frame: bytes | str, request_id: int, step_result: bool) -> Any:
        """What a call returns for the reply in ``frame``: the reply, or a :class:`StepResult`
        if ``step_result``; :data:`STALE` if it answers an earlier request (one that timed out
        or was cancelled: it is dropped). Raises the error an ``Error`` reply carries."""
        try:  # the hot path: one msgspec call
            reply = self._decode_binary(frame)  # type: ignore[arg-type]
        except Exception:
            reply = self._decode(frame)  # a text frame, or says what is wrong
        reply_id = getattr(reply, "id", None)
        if reply_id != request_id:
            if isinstance(reply, Error) and reply_id is None:
                raise remote_error(reply.code, reply.message)  # session-level, e.g. capacity
            if reply_id is None or reply_id > request_id:
                raise ProtocolError(f"reply {reply!r} does not answer request {request_id}")
            return STALE
        if reply.__class__ is Error:
            raise remote_error(reply.code, reply.message, reply.id)
        if not step_result:
            return reply
        observation = reply.observation
        if observation.__class__ is dict:  # a generic client: the env's own fields kept
            observation = GenericObservation.of(observation)
        return StepResult(observation)

    @staticmethod
    def _state_of(reply: Any) -> Any:
        """The state a ``GetState`` call returns for ``reply``."""
        assert isinstance(reply, StateReply)
        state: Any = reply.state
        if state.__class__ is dict:  # a generic client: the env's own fields kept
            state = GenericState.of(state)
        return state

    def _decode(self, frame: bytes | str) -> Any:
        try:
            return self._codec.decode(frame)
        except FrameError as exc:
            raise ProtocolError(f"undecodable reply from {self.endpoint}: {exc}") from exc

    @contextmanager
    def _observing(self, request: Request) -> Iterator[None]:
        """Around a call when ``_observed``: a span whose context travels with the request,
        and the call counted in ``metrics``."""
        kind = REQUEST_KINDS[type(request)]
        metrics, tracer = self.metrics, self._tracer
        began = perf_counter()
        try:
            if tracer is None:
                yield
                return
            hello = self._hello
            attributes = {"openenv.request_id": request.id, "server.address": str(self.endpoint)}
            if hello is not None:
                attributes |= {"openenv.env": hello.env, "openenv.session_id": hello.session_id}
            with tracer.start_as_current_span(
                f"openenv.{kind}", kind=tracing.CLIENT, attributes=attributes
            ):
                request.trace = tracing.carrier()
                yield
        except BaseException:
            if metrics is not None:
                metrics.failures[kind] += 1
            raise
        finally:
            if metrics is not None:
                metrics.latency[kind].record(perf_counter() - began)

    # Opening.

    def _handshake_headers(self) -> dict[str, str]:
        headers = {"User-Agent": "openenv"}
        if self._ticket is not None:
            headers["Authorization"] = fork_authorization(self._ticket)
        elif self.endpoint.token:
            headers["Authorization"] = f"Bearer {self.endpoint.token}"
        return headers

    @property
    def _subprotocols(self) -> list[str] | None:
        return None if self.protocol == "upstream" else [SUBPROTOCOL]

    def _speaks_ours(self, ws: _Wire, subprotocol: str | None) -> bool:
        """Whether the session speaks our protocol (a greeting follows); otherwise switch it
        to upstream OpenEnv's dialect: JSON text, no greeting, no ids."""
        if subprotocol == SUBPROTOCOL:
            return True
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
        return False

    def _greeted(self, frame: bytes | str) -> Hello:
        """The greeting ``frame`` holds, checked: our protocol version, this client's env."""
        greeting = self._decode(frame)
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

    def _forked_options(self, ticket: str) -> ClientOptions:
        """The constructor options of a session on a fork of this one's env."""
        return {
            "connect_timeout": self.connect_timeout,
            "timeout": self.timeout,
            "max_frame_bytes": self.max_frame_bytes,
            "protocol": "openenv",
            "ticket": ticket,
            "metrics": self.metrics,
        }

    def _error(self, exc: BaseException, request: Request | None = None) -> OpenEnvError:
        """See :func:`session_error`."""
        timeout = self.connect_timeout if request is None else self.timeout
        return session_error(
            exc, self.endpoint, request=request, timeout=timeout, ticket=self._ticket
        )


def session_error(
    exc: BaseException,
    endpoint: Endpoint,
    *,
    request: Request | None = None,
    timeout: float | None = None,
    ticket: str | None = None,
) -> OpenEnvError:
    """The openenv error for what the transport raised while opening a session (``request``
    None; ``timeout`` is then the connect timeout) or during a call: the one mapping of
    websockets', the socket's and time-outs' errors. The caller raises it ``from exc``."""
    if request is not None:
        if isinstance(exc, TimeoutError):
            name = _REQUEST_NAMES[type(request)]
            return EnvTimeoutError(
                f"no reply to {name} within {timeout} s from {endpoint}",
                timeout=timeout,
                request=name,
                request_id=request.id,
            )
        if isinstance(exc, ConnectionClosed):
            return _connection_lost(exc, endpoint)
        return ConnectionLostError(f"connection to {endpoint} failed: {exc}")
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status == 404:
            path = urlsplit(endpoint.url).path
            return ConnectError(
                f"{endpoint} has no WebSocket route at {path} (HTTP 404): "
                "is this an env server, and is the path right?",
                status=status,
            )
        if status in (401, 403) and ticket is not None:
            return AuthenticationError(
                f"{endpoint} refused the fork ticket (HTTP {status}): it was used already, "
                "expired, or comes from another server",
                status=status,
            )
        if status in (401, 403):
            return AuthenticationError(
                f"{endpoint} refused the session (HTTP {status}): missing or wrong token",
                status=status,
            )
        return ConnectError(f"{endpoint} refused the session (HTTP {status})", status=status)
    if isinstance(exc, ConnectionClosed):
        return ConnectError(_connection_lost(exc, endpoint).args[0])
    if isinstance(exc, TimeoutError):
        return ConnectError(
            f"{endpoint} did not open a session (handshake, greeting) in {timeout} s"
        )
    if isinstance(exc, (OSError, WebSocketException)):
        return ConnectError(f"cannot connect to {endpoint}: {exc or type(exc).__name__}")
    raise TypeError(f"no openenv error for {exc!r}") from exc


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


_REQUEST_NAMES = {  # errors
    Reset: "reset",
    Step: "step",
    GetState: "get_state",
    ListTools: "list_tools",
    CallTool: "call_tool",
    Fork: "fork",
}

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
