"""Calling an environment's methods outside our own session loop: the upstream dialect's
sessions and the HTTP routes. Sync, ``async def`` and blocking envs, under the step time limit."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import msgspec

from openenv.server.environment import Environment

__all__ = [
    "MAX_ERROR_CHARS",
    "EnvCallError",
    "EnvCaller",
    "StepTimeout",
    "accepted_kwargs",
    "finished",
]

log = logging.getLogger("openenv.server")

MAX_ERROR_CHARS = 2000  # of an env exception's text in an error reply


class EnvCallError(Exception):
    """The env raised; the env is still usable."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StepTimeout(Exception):
    """An env call exceeded the server's step time limit: the env's state is unknown, so
    every way of serving it ends the session (or answers the HTTP request) there."""

    def __init__(self, limit: float | None) -> None:
        self.message = f"the environment exceeded the server's {limit} s step limit"
        super().__init__(self.message)


class EnvCaller:
    """Runs one env instance's methods the cheapest safe way, for every way of serving it (our
    sessions, upstream's dialect, the HTTP routes).

    A blocking env (``blocking = True``) gets one thread of its own, so its calls always run on
    the same thread and never stall other sessions; other sync methods run on the loop, with no
    thread hop and, through :meth:`begin`, no coroutine either.

    Args:
        env: the environment instance.
        step_timeout: seconds a call may take (None: no limit).
    """

    def __init__(self, env: Environment[Any, Any, Any], step_timeout: float | None) -> None:
        self.env = env
        self.step_timeout = step_timeout
        self.thread = ThreadPoolExecutor(1, "openenv-env") if type(env).blocking else None

    def begin(self, method: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Start ``method(*args, **kwargs)``: its result when it ran to the end on the loop (a
        sync env's call), else an awaitable of it (see :func:`finished`).

        Raises:
            Exception: whatever a sync method raised.
        """
        if self.thread is not None and not inspect.iscoroutinefunction(method):
            call = functools.partial(method, *args, **kwargs)
            return asyncio.get_running_loop().run_in_executor(self.thread, call)
        return method(*args, **kwargs)

    def begin_off_loop(self, method: Callable[[], Any]) -> Awaitable[Any]:
        """``method()`` as an awaitable that does not run on the event loop: on the env's own
        thread if it has one, awaited if it is ``async def``, else on a worker thread."""
        if self.thread is not None or inspect.iscoroutinefunction(method):
            return self.begin_later(method)
        return asyncio.get_running_loop().run_in_executor(None, method)

    def begin_later(self, method: Callable[[], Any]) -> Awaitable[Any]:
        """``method()`` as an awaitable, whatever kind of method it is."""
        started = self.begin(method)
        if finished(started):

            async def done() -> Any:
                return started

            return done()
        return cast(Awaitable[Any], started)

    async def within_limit(self, pending: Awaitable[Any]) -> Any:
        """``await pending``, or :class:`StepTimeout` past the step time limit (an env's own
        ``TimeoutError`` passes through as what it is)."""
        limit = self.step_timeout
        if limit is None:
            return await pending
        deadline = None
        try:
            async with asyncio.timeout(limit) as deadline:
                return await pending
        except TimeoutError:
            if deadline is not None and deadline.expired():
                raise StepTimeout(limit) from None
            raise

    async def call(self, method: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``method(*args, **kwargs)``, awaited if it returns an awaitable.

        Raises:
            EnvCallError: the env raised.
            StepTimeout: the env exceeded the time limit.
        """
        try:
            started = self.begin(method, *args, **kwargs)
            if finished(started):
                return started
            return await self.within_limit(started)
        except StepTimeout:
            raise
        except Exception as exc:
            log.debug("env raised", exc_info=True)
            raise EnvCallError(f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]) from exc

    async def state(self) -> Any:
        """The env's ``state`` property (read on the env's thread when it has one)."""
        return await self.call(lambda: self.env.state)

    async def release(self, session: str = "") -> None:
        """Close the env (errors are logged, not raised) and its thread."""
        try:
            closing = self.env.close()
            if inspect.isawaitable(closing):
                await closing
        except Exception:
            log.warning(
                "env close failed in session %s",
                session or "?",
                exc_info=True,
                extra={"session_id": session},
            )
        if self.thread is not None:
            self.thread.shutdown(wait=False, cancel_futures=True)


def finished(started: Any) -> bool:
    """Whether what :meth:`EnvCaller.begin` returned is the result itself. A sync env returns
    its Struct directly: recognised without the awaitable check."""
    return isinstance(started, msgspec.Struct) or not inspect.isawaitable(started)


_SIGNATURES: dict[Callable[..., Any], tuple[frozenset[str], bool]] = {}


def accepted_kwargs(method: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The items of ``kwargs`` that ``method`` accepts: all of them if it takes ``**kwargs``.

    Upstream passes reset/step keywords this way, silently dropping the ones a method does not
    name; so do we in its dialect and over HTTP.
    """
    function = getattr(method, "__func__", method)
    known = _SIGNATURES.get(function)
    if known is None:
        parameters = inspect.signature(method).parameters.values()
        names = frozenset(p.name for p in parameters if p.kind is not p.VAR_KEYWORD)
        var_keyword = any(p.kind is p.VAR_KEYWORD for p in parameters)
        known = _SIGNATURES[function] = (names, var_keyword)
    names, var_keyword = known
    if var_keyword:
        return kwargs
    return {key: value for key, value in kwargs.items() if key in names}
