"""One session: the request loop of one WebSocket connection around one environment."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
from starlette.types import Message, Receive, Send

from openenv.protocol import (
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
    Reset,
    Result,
    StateReply,
    Step,
)
from openenv.server.config import ServerConfig
from openenv.server.environment import Environment
from openenv.server.forking import ParkedFork, TicketBook

__all__ = ["Session"]

log = logging.getLogger("openenv.server")

_MAX_ERROR_CHARS = 2000

_Reply = Result[Any] | StateReply[Any] | ForkTickets | Goodbye | Error


class _Answer(Exception):
    """Cuts a request short with ``reply``; a ``close_code`` also ends the session."""

    def __init__(self, reply: _Reply, close_code: int | None = None) -> None:
        self.reply = reply
        self.close_code = close_code


class Session:
    """Serves one connection: greets, then answers requests one at a time until it closes.

    Nothing a client sends can end the server: undecodable frames, bad actions and exceptions
    inside the env become ``Error`` replies and the session stays usable. Only an oversized
    frame (1009) or a step past the time limit (1011, env state unknown) ends the session.
    """

    def __init__(
        self,
        receive: Receive,
        send: Send,
        env: Environment[Any, Any, Any],
        codec: Codec,
        hello: Hello,
        config: ServerConfig,
        forks: TicketBook | None = None,
        was_reset: bool = False,
    ) -> None:
        # The raw ASGI callables: per message, no wrapper layers between us and the server.
        self._receive_message = receive
        self._send_message = send
        self._env = env
        self._codec = codec
        self._hello = hello
        self._config = config
        self._forks = forks
        self._was_reset = was_reset  # a forked session continues its parent's episode
        # A blocking env gets one thread of its own: its calls never queue behind other
        # sessions' and always run on the same thread, as single-threaded libraries expect.
        self._thread = ThreadPoolExecutor(1, "openenv-env") if type(env).blocking else None

    async def run(self) -> None:
        """Serve until the client closes, then release the env."""
        try:
            await self._send_message(self._outgoing(self._hello, text=False))
            await self._serve()
        except OSError:
            pass  # the client went away (uvicorn's ClientDisconnected); nothing to answer
        finally:
            await self._release()

    async def _serve(self) -> None:
        # The per-message loop: plain function calls around the two awaits on the transport.
        receive, send = self._receive_message, self._send_message
        while True:
            frame = _incoming(await receive())
            if frame is None:
                return
            text = isinstance(frame, str)
            if len(frame) > self._config.max_frame_bytes:
                await self._close(CloseCode.TOO_BIG, "frame exceeds the server's size limit")
                return
            close_code = None
            try:
                reply = await self._handle(frame)
            except _Answer as answer:
                reply, close_code = answer.reply, answer.close_code
            await send(self._outgoing(reply, text))
            if close_code is not None:
                await self._close(close_code)
                return

    def _outgoing(self, message: msgspec.Struct, text: bool) -> dict[str, Any]:
        """The ASGI message sending ``message`` in the kind of frame the request came in."""
        if text:
            return {"type": "websocket.send", "text": self._codec.encode_text(message)}
        return {"type": "websocket.send", "bytes": self._codec.encode(message)}

    async def _close(self, code: int, reason: str = "") -> None:
        await self._send_message({"type": "websocket.close", "code": code, "reason": reason})

    async def _handle(self, frame: bytes | str) -> _Reply:
        try:
            request = self._codec.decode(frame)
        except FrameError as exc:
            return Error(code=exc.code, message=exc.message, id=exc.request_id)
        if isinstance(request, Step):
            if not self._was_reset:
                return _not_reset(request.id)
            observation = await self._call_env(request.id, self._env.step, request.action)
            return _result(request.id, observation)
        if isinstance(request, Reset):
            observation = await self._call_env(
                request.id,
                self._env.reset,
                seed=request.seed,
                episode_id=request.episode_id,
                **request.options,
            )
            self._was_reset = True
            return _result(request.id, observation)
        if isinstance(request, GetState):
            if not self._was_reset:
                return _not_reset(request.id)
            state = await self._call_env(request.id, lambda: self._env.state)
            return StateReply(id=request.id, state=state)
        if isinstance(request, Fork):
            return await self._fork(request)
        assert isinstance(request, Close)
        raise _Answer(Goodbye(id=request.id), CloseCode.NORMAL)

    async def _call_env(
        self, request_id: int, method: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        """Run an env method the cheapest safe way, under the server's step time limit.

        Raises:
            _Answer: ``env_error`` when the env raised (the session stays open), ``timeout``
                when it exceeded the limit (the session closes: the env's state is unknown).
        """
        limit = self._config.step_timeout
        deadline = None
        try:
            if self._thread is not None and not inspect.iscoroutinefunction(method):
                call = functools.partial(method, *args, **kwargs)
                pending: Awaitable[Any] = asyncio.get_running_loop().run_in_executor(
                    self._thread, call
                )
            else:
                result = method(*args, **kwargs)
                # A sync env returns its Struct directly: no awaitable check, no extra frame.
                if isinstance(result, msgspec.Struct) or not inspect.isawaitable(result):
                    return result
                pending = result
            if limit is None:
                return await pending
            async with asyncio.timeout(limit) as deadline:
                return await pending
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline is not None and deadline.expired():
                message = (
                    f"the environment exceeded the server's {limit} s step limit; session closed"
                )
                error = Error(code=ErrorCode.TIMEOUT, message=message, id=request_id)
                log.warning("session %s: %s", self._hello.session_id, message)
                raise _Answer(error, CloseCode.INTERNAL_ERROR) from None
            log.info("env raised in session %s: %r", self._hello.session_id, exc)
            log.debug("traceback of the env error", exc_info=True)
            message = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]
            raise _Answer(Error(code=ErrorCode.ENV_ERROR, message=message, id=request_id)) from exc

    async def _fork(self, request: Fork) -> _Reply:
        """Copy the env ``request.count`` times and park the copies under tickets."""
        forks, count = self._forks, request.count
        if forks is None:
            message = "this server does not serve forked sessions"
            return Error(code=ErrorCode.NOT_SUPPORTED, message=message, id=request.id)
        if count < 1:
            message = f"fork count must be at least 1, not {count}"
            return Error(code=ErrorCode.INVALID_MESSAGE, message=message, id=request.id)
        if not forks.reserve(count):
            message = (
                f"server is at capacity ({self._config.max_sessions} sessions): no room for "
                f"{count} forked session(s); a fork counts as a session"
            )
            return Error(code=ErrorCode.CAPACITY, message=message, id=request.id)
        copies: list[Environment[Any, Any, Any]] = []
        try:
            for _ in range(count):
                copies.append(await self._call_env(request.id, self._env.fork))
        except BaseException as exc:
            for copy in copies:
                forks.discard(copy)
            forks.release(count - len(copies))
            cause = exc.__cause__ if isinstance(exc, _Answer) else None
            if isinstance(cause, NotImplementedError):
                message = str(cause)[:_MAX_ERROR_CHARS]
                return Error(code=ErrorCode.NOT_SUPPORTED, message=message, id=request.id)
            raise
        parent = self._hello.session_id
        tickets = [forks.issue(ParkedFork(copy, self._was_reset, parent)) for copy in copies]
        return ForkTickets(id=request.id, tickets=tickets, expires_in=forks.ttl)

    async def _release(self) -> None:
        try:
            closing = self._env.close()
            if inspect.isawaitable(closing):
                await closing
        except Exception:
            log.warning("env close failed in session %s", self._hello.session_id, exc_info=True)
        if self._thread is not None:
            self._thread.shutdown(wait=False, cancel_futures=True)


def _incoming(message: Message) -> bytes | str | None:
    """A received frame's data; None once the client disconnected."""
    if message["type"] != "websocket.receive":  # websocket.disconnect
        return None
    data: bytes | str | None = message.get("bytes")
    if data is None:
        data = message.get("text") or ""
    return data


def _not_reset(request_id: int) -> Error:
    message = "call reset() before step() or state(): this session has no episode yet"
    return Error(code=ErrorCode.NOT_RESET, message=message, id=request_id)


def _result(request_id: int, observation: Any) -> Result[Any]:
    return Result(id=request_id, observation=observation)
