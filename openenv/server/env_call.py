"""Calling an environment's methods outside our own session loop: the upstream dialect's
sessions and the HTTP routes. Sync, ``async def`` and blocking envs, under the step time limit."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from openenv.server.environment import Environment

__all__ = ["EnvCallError", "EnvCaller", "accepted_kwargs"]

log = logging.getLogger("openenv.server")

_MAX_ERROR_CHARS = 2000


class EnvCallError(Exception):
    """The env raised (``timed_out`` False; the env is still usable) or exceeded the step time
    limit (``timed_out`` True; its state is unknown)."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.timed_out = timed_out


class EnvCaller:
    """Runs one env instance's methods the cheapest safe way.

    A blocking env (``blocking = True``) gets one thread of its own, so its calls always run on
    the same thread and never stall other sessions; other sync methods run on the loop.

    Args:
        env: the environment instance.
        step_timeout: seconds a call may take (None: no limit).
    """

    def __init__(self, env: Environment[Any, Any, Any], step_timeout: float | None) -> None:
        self.env = env
        self._limit = step_timeout
        self._thread = ThreadPoolExecutor(1, "openenv-env") if type(env).blocking else None

    async def call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``method(*args, **kwargs)``, awaited if it returns an awaitable.

        Raises:
            EnvCallError: the env raised, or exceeded the time limit.
        """
        limit = self._limit
        deadline = None
        try:
            if self._thread is not None and not inspect.iscoroutinefunction(method):
                call = functools.partial(method, *args, **kwargs)
                loop = asyncio.get_running_loop()
                pending: Awaitable[Any] = loop.run_in_executor(self._thread, call)
            else:
                result = method(*args, **kwargs)
                if not inspect.isawaitable(result):
                    return result
                pending = result
            if limit is None:
                return await pending
            async with asyncio.timeout(limit) as deadline:
                return await pending
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline is not None and deadline.expired():
                raise EnvCallError(
                    f"the environment exceeded the server's {limit} s step limit", timed_out=True
                ) from None
            log.debug("env raised", exc_info=True)
            raise EnvCallError(f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]) from exc

    async def state(self) -> Any:
        """The env's ``state`` property (read on the env's thread when it has one)."""
        return await self.call(lambda: self.env.state)

    async def release(self) -> None:
        """Close the env (errors are logged, not raised) and its thread."""
        try:
            closing = self.env.close()
            if inspect.isawaitable(closing):
                await closing
        except Exception:
            log.warning("env close failed", exc_info=True)
        if self._thread is not None:
            self._thread.shutdown(wait=False, cancel_futures=True)


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
