"""Sessions created over HTTP, for clients that call tools without a WebSocket of their own.

Upstream OpenEnv 0.10's ``MCPToolClient`` opens a session with the JSON-RPC method
``openenv/session/create`` on ``POST /mcp``, calls tools there naming it (``params.session_id``),
may attach a WebSocket to it (``/ws?session_id=...``, one at a time) for reset/step/state on the
same env, and ends it with ``openenv/session/close``. Such a session holds an env and a session
slot with no connection to end it, so one that is neither attached nor used for
``session_idle_timeout`` seconds is reaped (its env closed, its slot freed).

The env is reset once when the session is created: a tool client has no episode to start, and
the env's tools then find it as after any reset.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from openenv.server.config import ServerConfig
from openenv.server.env_call import EnvCaller, EnvCallError, StepTimeout

__all__ = ["HttpSession", "HttpSessions", "SessionRefused"]

log = logging.getLogger("openenv.server")


class SessionRefused(Exception):
    """A session could not be created, found or attached; the message says why.

    Attributes:
        capacity: the server is full.
    """

    def __init__(self, message: str, capacity: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.capacity = capacity


class HttpSession:
    """One HTTP-created session: its env (run through ``caller``) and its bookkeeping."""

    __slots__ = ("attached", "caller", "closing", "id", "last_used")

    def __init__(self, session_id: str, caller: EnvCaller) -> None:
        self.id = session_id
        self.caller = caller
        self.last_used = time.monotonic()
        self.attached = False  # a WebSocket serves it now
        self.closing = False  # closed while attached: released when the WebSocket ends


class HttpSessions:
    """The HTTP-created sessions of one app.

    Args:
        make_env: creates one env instance.
        reserve: takes a session slot (False when the server is full).
        release: gives one back.
        config: the server's limits (``step_timeout``, ``session_idle_timeout``).
    """

    def __init__(
        self,
        make_env: Callable[[], Any],
        reserve: Callable[[int], bool],
        release: Callable[[int], None],
        config: ServerConfig,
    ) -> None:
        self._make_env = make_env
        self._reserve = reserve
        self._release = release
        self._config = config
        self._sessions: dict[str, HttpSession] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._sessions)

    async def drained(self) -> None:
        """Return once no HTTP-created session is left (closed or reaped)."""
        await self._empty.wait()

    async def create(self, session_id: str | None = None) -> str:
        """Create a session (its env made and reset) and return its id (``session_id``, or a
        new one).

        Raises:
            SessionRefused: the server is full, or the env could not be made or reset.
        """
        if not self._reserve(1):
            limit = self._config.max_sessions
            raise SessionRefused(f"server is at capacity ({limit} sessions)", capacity=True)
        try:
            env = self._make_env()
        except Exception as exc:
            self._release(1)
            raise SessionRefused(f"the env could not be created: {exc!r}") from exc
        caller = EnvCaller(env, self._config.step_timeout)
        try:
            await caller.call(env.reset)
        except (EnvCallError, StepTimeout) as exc:
            await caller.release()
            self._release(1)
            raise SessionRefused(f"the env's reset failed: {exc.message}") from exc
        session = HttpSession(session_id or uuid.uuid4().hex, caller)
        self._sessions[session.id] = session
        self._empty.clear()
        log.info("HTTP session %s opened (%d HTTP sessions)", session.id, len(self._sessions))
        self._watch()
        return session.id

    def use(self, session_id: Any) -> HttpSession:
        """The session ``session_id``, marked as used now.

        Raises:
            SessionRefused: no such session (never made, closed or reaped).
        """
        session = self._sessions.get(session_id) if isinstance(session_id, str) else None
        if session is None or session.closing:
            raise SessionRefused(f"Unknown session_id: {session_id}")
        session.last_used = time.monotonic()
        return session

    def attach(self, session_id: str) -> HttpSession:
        """The session, now served by a WebSocket (never reaped meanwhile).

        Raises:
            SessionRefused: no such session, or another WebSocket serves it.
        """
        session = self.use(session_id)
        if session.attached:
            raise SessionRefused(f"Session {session_id} already has an attached WebSocket")
        session.attached = True
        return session

    async def detach(self, session: HttpSession) -> None:
        """The session's WebSocket ended: it waits for calls again, or ends if it was closed."""
        session.attached = False
        session.last_used = time.monotonic()
        if session.closing:
            await self._end(session)
        self._changed.set()

    async def close(self, session_id: Any) -> dict[str, Any]:
        """End a session; one a WebSocket serves ends when that WebSocket does.

        Raises:
            SessionRefused: no such session.
        """
        session = self.use(session_id)
        if session.attached:
            session.closing = True
            return {"session_id": session.id, "closed": False, "closing": True}
        await self._end(session)
        return {"session_id": session.id, "closed": True}

    async def _end(self, session: HttpSession) -> None:
        if self._sessions.pop(session.id, None) is None:
            return
        await session.caller.release(session.id)
        self._release(1)
        if not self._sessions:
            self._empty.set()
        log.info("HTTP session %s closed (%d HTTP sessions)", session.id, len(self._sessions))

    def _watch(self) -> None:
        """Start the reaper if it is not running (it stops when no session is left)."""
        self._changed.set()
        if self._config.session_idle_timeout is None:
            return
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap())

    async def _reap(self) -> None:
        """End sessions that no WebSocket serves and nobody used for the idle timeout."""
        timeout = self._config.session_idle_timeout
        assert timeout is not None
        while self._sessions:
            self._changed.clear()
            now = time.monotonic()
            idle = [s for s in self._sessions.values() if not s.attached]
            for session in idle:
                if now - session.last_used >= timeout:
                    log.info("HTTP session %s idle for %.0f s: reaped", session.id, timeout)
                    await self._end(session)
            waiting = [s.last_used + timeout - now for s in idle if s.id in self._sessions]
            try:
                async with asyncio.timeout(max(min(waiting, default=timeout), 0.001)):
                    await self._changed.wait()
            except TimeoutError:
                pass
