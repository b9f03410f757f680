"""The native dialect: openenv's msgpack (binary) and JSON (text) frames around one env."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from time import perf_counter as _clock
from typing import Any, cast

from openenv.exceptions import InvalidActionError
from openenv.observability import tracing
from openenv.protocol import (
    REQUEST_KINDS,
    CallTool,
    Close,
    CloseCode,
    Codec,
    Error,
    ErrorCode,
    Fork,
    ForkTickets,
    FrameError,
    GetState,
    Goodbye,
    Hello,
    ListTools,
    Reset,
    Result,
    StateReply,
    Step,
    ToolList,
    ToolReply,
)
from openenv.server.config import ServerConfig
from openenv.server.dialect import Closing, Outgoing, Reply, is_ready
from openenv.server.env_call import MAX_ERROR_CHARS, EnvCaller, StepTimeout, finished
from openenv.server.environment import Environment
from openenv.server.forking import ParkedFork, TicketBook
from openenv.server.metrics import ServerMetrics
from openenv.server.tools import Toolbox, ToolCallError, toolbox

__all__ = ["Session"]

log = logging.getLogger("openenv.server")

_Message = Result[Any] | StateReply[Any] | ToolList | ToolReply | ForkTickets | Goodbye | Error
_MakeReply = Callable[[int, Any], _Message]


class Session:
    """Serves one connection's requests: a :class:`~openenv.server.dialect.Dialect`.

    Nothing a client sends can end the server: undecodable frames, bad actions and exceptions
    inside the env become ``Error`` replies and the session stays usable. Only an oversized
    frame (1009) or a step past the time limit (1011, env state unknown) ends the session.
    A sync env is stepped inside :meth:`handle`, so its reply is ready at once; an async env,
    or a blocking one (on a thread of its own), gives an awaitable reply.
    """

    def __init__(
        self,
        env: Environment[Any, Any, Any],
        codec: Codec,
        hello: Hello,
        config: ServerConfig,
        forks: TicketBook | None = None,
        was_reset: bool = False,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self._env = env
        self._tools: Toolbox | None = None  # the env's tools, read on the first tool request
        self._codec = codec
        self._encode = codec.encode
        self._hello = hello
        self._config = config
        self._max_frame_bytes = config.max_frame_bytes
        self._forks = forks
        self._was_reset = False
        # Runs the env's methods: a blocking env on a thread of its own, under the time limit.
        self._caller = EnvCaller(env, config.step_timeout)
        # The hot path, a sync env's step once reset, is inlined in ``handle``: set once the
        # first reset succeeds (None until then, and for async or blocking envs).
        self._sync_step: Callable[[Any], Any] | None = None
        self._observation_type = type(env).observation_type
        self._decode_binary, self._encode_binary = codec.binary_codec
        self._metrics = metrics
        # Spans for every request when the process has an OpenTelemetry SDK (then no request
        # takes the hot path, which has none); else only the request's own trace field counts.
        self._tracer = tracing.tracer("openenv.server")
        self._began = 0.0  # when the request being handled came in, if it is timed
        if was_reset:  # a forked session continues its parent's episode
            self._episode_started()

    def greeting(self) -> bytes:
        """The ``Hello`` frame."""
        greeting = self._encode(self._hello)
        if self._metrics is not None:
            self._metrics.frames_out += 1
            self._metrics.bytes_out += len(greeting)
        return greeting

    def handle(self, frame: bytes | str) -> Reply:
        """The reply to one request frame, in the kind of frame it came in."""
        metrics = self._metrics
        if metrics is not None:
            metrics.frames_in += 1
            metrics.bytes_in += len(frame)
            # Step times are sampled (see ServerMetrics.countdown); 0.0: this one is not timed.
            countdown = metrics.countdown - 1
            if countdown:
                metrics.countdown = countdown
                self._began = 0.0
            else:
                metrics.countdown = metrics.every
                self._began = _clock()
        step = self._sync_step
        if step is None or frame.__class__ is not bytes or len(frame) > self._max_frame_bytes:
            return self._decoded(frame)
        # The hot path: a binary frame to a sync env that was reset, with no trace context.
        # What _decoded and _call do, in one Python frame; anything unusual takes their path.
        try:
            request = self._decode_binary(frame)
        except Exception:
            return self._decoded(frame)  # says what is wrong with it
        if request.__class__ is not Step or request.trace is not None:
            return self._request(request, frame)
        if metrics is None:
            try:
                observation = step(request.action)
            except Exception as exc:
                return self._env_raised(exc, request.id, frame)
            if observation.__class__ is not self._observation_type:
                return self._call(request.id, frame, _result, lambda: observation)
            return self._encode_binary(Result(id=request.id, observation=observation))
        began = self._began
        entered = _clock() if began else 0.0
        try:
            observation = step(request.action)
        except Exception as exc:
            metrics.requests[_STEP] += 1
            return self._env_raised(exc, request.id, frame)
        if observation.__class__ is not self._observation_type:
            metrics.requests[_STEP] += 1
            return self._call(request.id, frame, _result, lambda: observation)
        if not began:
            reply = self._encode_binary(Result(id=request.id, observation=observation))
            metrics.hot_steps += 1
            metrics.hot_bytes_out += len(reply)
            return reply
        left = _clock()
        reply = self._encode_binary(Result(id=request.id, observation=observation))
        metrics.step_timed(began, entered, left, len(reply))
        return reply

    def _decoded(self, frame: bytes | str) -> Reply:
        if len(frame) > self._max_frame_bytes:
            if self._metrics is not None:
                self._metrics.error("too_big")
            return Closing(CloseCode.TOO_BIG, "frame exceeds the server's size limit")
        try:
            request = self._codec.decode(frame)
        except FrameError as exc:
            return self._out(Error(code=exc.code, message=exc.message, id=exc.request_id), frame)
        return self._request(request, frame)

    def _request(self, request: Any, frame: bytes | str) -> Reply:
        tracer = self._tracer
        if tracer is None or request.__class__ is Close:
            return self._serve(request, frame)
        name = REQUEST_KINDS[request.__class__]
        span = tracer.start_span(
            f"openenv.{name}",
            context=tracing.parent(request.trace),
            kind=tracing.SERVER,
            attributes={
                "openenv.env": self._hello.env,
                "openenv.session_id": self._hello.session_id,
                "openenv.request_id": request.id,
            },
        )
        try:
            reply = self._serve(request, frame)
        except BaseException:
            span.end()
            raise
        if is_ready(reply):
            span.end()
            return reply
        return tracing.ending(cast(Awaitable[Outgoing], reply), span)

    def _serve(self, request: Any, frame: bytes | str) -> Reply:
        metrics = self._metrics
        if metrics is not None:
            metrics.requests[REQUEST_KINDS[request.__class__], "openenv"] += 1
        if isinstance(request, Step):
            if not self._was_reset:
                return self._out(_not_reset(request.id), frame)
            return self._call(request.id, frame, _stepped, self._env.step, request.action)
        if isinstance(request, Reset):
            taken = _RESET_PARAMETERS.intersection(request.options)
            if taken:
                message = (
                    f"reset option(s) {sorted(taken)} collide with reset's own parameters: "
                    "pass seed and episode_id as themselves, and name no option 'self'"
                )
                error = Error(code=ErrorCode.INVALID_MESSAGE, message=message, id=request.id)
                return self._out(error, frame)
            return self._call(
                request.id,
                frame,
                self._reset_done,
                self._env.reset,
                seed=request.seed,
                episode_id=request.episode_id,
                **request.options,
            )
        if isinstance(request, GetState):
            if not self._was_reset:
                return self._out(_not_reset(request.id), frame)
            return self._call(request.id, frame, _state_reply, lambda: self._env.state)
        if request.__class__ is CallTool or request.__class__ is ListTools:
            return self._tool(request, frame)
        if isinstance(request, Fork):
            return self._fork(request, frame)
        assert isinstance(request, Close)
        return Closing(CloseCode.NORMAL, frame=self._out(Goodbye(id=request.id), frame))

    def _tool(self, request: ListTools | CallTool, frame: bytes | str) -> Reply:
        """List the env's tools, or call one as a step (validated before it runs)."""
        tools = self._tools
        if tools is None:
            tools = self._tools = toolbox(type(self._env))
        if not isinstance(request, CallTool):
            return self._out(ToolList(id=request.id, tools=tools.specs), frame)
        if not self._was_reset:
            return self._out(_not_reset(request.id), frame)
        try:
            call = tools.prepare(self._env, request.name, request.arguments)
        except ToolCallError as exc:
            error = Error(code=ErrorCode.INVALID_ACTION, message=str(exc), id=request.id)
            return self._out(error, frame)
        if self._caller.thread is None and not tools.is_async(request.name):
            # A sync tool of an env on the loop, as a sync step: run here, answered at once
            # (what the tool raised is already its result's error).
            return self._out(ToolReply(id=request.id, observation=call()), frame)
        return self._call(request.id, frame, _tool_reply, call)

    async def release(self) -> None:
        """Close the env, and stop its thread."""
        await self._caller.release(self._hello.session_id)

    def _out(self, message: _Message, request: bytes | str) -> bytes | str:
        """``message`` encoded for the kind of frame ``request`` came in."""
        out = (
            self._encode(message)
            if request.__class__ is bytes
            else self._codec.encode_text(message)
        )
        metrics = self._metrics
        if metrics is not None:
            metrics.frames_out += 1
            metrics.bytes_out += len(out)
            if message.__class__ is Error:
                metrics.error(message.code)
        return out

    def _reset_done(self, request_id: int, observation: Any) -> Result[Any]:
        self._episode_started()
        return _result(request_id, observation)

    def _episode_started(self) -> None:
        self._was_reset = True
        step = self._env.step
        if (
            self._caller.thread is None
            and not inspect.iscoroutinefunction(step)
            and self._tracer is None
        ):
            self._sync_step = step

    def _call(
        self,
        request_id: int,
        frame: bytes | str,
        reply: _MakeReply,
        method: Callable[..., Any],
        /,
        *args: Any,
        **kwargs: Any,
    ) -> Reply:
        """Call an env method the cheapest safe way and answer with ``reply(id, result)``."""
        entered = _clock()
        try:
            started = self._caller.begin(method, *args, **kwargs)
        except Exception as exc:
            return self._env_raised(exc, request_id, frame)
        if finished(started):
            return self._answer(reply, request_id, started, frame, entered)
        return self._finish(started, request_id, frame, reply, entered)

    def _answer(
        self, reply: _MakeReply, request_id: int, result: Any, frame: bytes | str, entered: float
    ) -> bytes | str:
        """The reply to a call that returned ``result``; a step's times are counted."""
        if reply is not _stepped:
            return self._out(reply(request_id, result), frame)
        metrics, left = self._metrics, _clock()
        out = self._out(_result(request_id, result), frame)
        if metrics is not None and self._began:
            metrics.stepped("openenv", _clock() - self._began, left - entered)
        return out

    async def _finish(
        self,
        pending: Awaitable[Any],
        request_id: int,
        frame: bytes | str,
        reply: _MakeReply,
        entered: float,
    ) -> Outgoing:
        """Await an env call under the server's step time limit, and answer it."""
        try:
            result = await self._caller.within_limit(pending)
        except StepTimeout as timeout:
            return self._timed_out(timeout, request_id, frame)
        except Exception as exc:
            return self._env_raised(exc, request_id, frame)
        return self._answer(reply, request_id, result, frame, entered)

    def _timed_out(self, timeout: StepTimeout, request_id: int, frame: bytes | str) -> Closing:
        """Past the limit the client gets ``timeout`` and the session closes (1011): the
        env's state is then unknown."""
        message = f"{timeout.message}; session closed"
        error = Error(code=ErrorCode.TIMEOUT, message=message, id=request_id)
        session_id = self._hello.session_id
        extra = {"session_id": session_id, "request_id": request_id}
        log.warning("session %s: %s", session_id, message, extra=extra)
        return Closing(CloseCode.INTERNAL_ERROR, frame=self._out(error, frame))

    async def _fork(self, request: Fork, frame: bytes | str) -> Outgoing:
        """Copy the env ``request.count`` times and park the copies under tickets."""
        forks, count = self._forks, request.count
        if forks is None:
            message = "this server does not serve forked sessions"
            error = Error(code=ErrorCode.NOT_SUPPORTED, message=message, id=request.id)
            return self._out(error, frame)
        limit = self._config.max_forks_per_request
        if not 1 <= count <= limit:
            message = f"fork count must be between 1 and {limit} (the server's limit), not {count}"
            error = Error(code=ErrorCode.INVALID_MESSAGE, message=message, id=request.id)
            return self._out(error, frame)
        parent = self._hello.session_id
        parked, most = forks.parked_by(parent), self._config.max_parked_forks
        if parked + count > most:
            message = (
                f"this session has {parked} fork(s) waiting for their tickets and may park at "
                f"most {most}: redeem or let some expire first"
            )
            return self._out(Error(code=ErrorCode.CAPACITY, message=message, id=request.id), frame)
        if not forks.reserve(count):
            message = (
                f"server is at capacity ({self._config.max_sessions} sessions): no room for "
                f"{count} forked session(s); a fork counts as a session"
            )
            return self._out(Error(code=ErrorCode.CAPACITY, message=message, id=request.id), frame)
        copies: list[Environment[Any, Any, Any]] = []
        try:
            for _ in range(count):
                # Off the event loop: deep-copying a large env takes long enough to stall
                # every other session.
                fork = self._caller.begin_off_loop(self._env.fork)
                copies.append(await self._caller.within_limit(fork))
        except BaseException as exc:
            for copy in copies:
                forks.discard(copy)
            forks.release(count - len(copies))
            if isinstance(exc, StepTimeout):
                return self._timed_out(exc, request.id, frame)
            if isinstance(exc, NotImplementedError):
                message = str(exc)[:MAX_ERROR_CHARS]
                error = Error(code=ErrorCode.NOT_SUPPORTED, message=message, id=request.id)
                return self._out(error, frame)
            if isinstance(exc, Exception):
                return self._env_raised(exc, request.id, frame)
            raise
        if self._metrics is not None:
            self._metrics.forks += count
        tickets = [forks.issue(ParkedFork(copy, self._was_reset, parent)) for copy in copies]
        return self._out(ForkTickets(id=request.id, tickets=tickets, expires_in=forks.ttl), frame)

    def _env_raised(self, exc: Exception, request_id: int, frame: bytes | str) -> bytes | str:
        session_id = self._hello.session_id
        extra = {"session_id": session_id, "request_id": request_id}
        log.info("env raised in session %s: %r", session_id, exc, extra=extra)
        log.debug("traceback of the env error", exc_info=exc, extra=extra)
        # An env refuses an action by raising InvalidActionError: the client gets that code.
        if isinstance(exc, InvalidActionError):
            code, message = ErrorCode.INVALID_ACTION, str(exc)[:MAX_ERROR_CHARS]
        else:
            code, message = ErrorCode.ENV_ERROR, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        return self._out(Error(code=code, message=message, id=request_id), frame)


_RESET_PARAMETERS = frozenset({"seed", "episode_id", "self"})


def _not_reset(request_id: int) -> Error:
    message = "call reset() before step() or state(): this session has no episode yet"
    return Error(code=ErrorCode.NOT_RESET, message=message, id=request_id)


def _tool_reply(request_id: int, observation: Any) -> ToolReply:
    return ToolReply(id=request_id, observation=observation)


def _state_reply(request_id: int, state: Any) -> StateReply[Any]:
    return StateReply(id=request_id, state=state)


def _result(request_id: int, observation: Any) -> Result[Any]:
    return Result(id=request_id, observation=observation)


def _stepped(request_id: int, observation: Any) -> Result[Any]:
    """A step's reply (:func:`_result`, under a name of its own so that steps are timed)."""
    return Result(id=request_id, observation=observation)


_STEP = ("step", "openenv")
