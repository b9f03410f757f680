"""One WebSocket session with an env's ASGI app, in process: frames in, frames out, no socket.

The checker drives the env's real app (the one ``openenv serve`` serves) through this, so what
it checks is what clients get: the session loop, both frame kinds, the server's own refusals.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Any

from openenv.protocol import SUBPROTOCOL, Codec, Hello, reply_type

__all__ = ["AppSession", "SessionEnded"]

_TIMEOUT_S = 30.0


class SessionEnded(Exception):
    """The app closed the session (``code``) or failed (``__cause__``) instead of answering."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(
            f"the app closed the session (code {code}){': ' if reason else ''}{reason}"
        )
        self.code = code


class AppSession:
    """A session with ``app`` at ``/ws``; ``request`` sends one frame and returns the reply.

    Args:
        app: an app made by :func:`openenv.server.create_app`.
        observation_type: what replies' observations decode into.
        state_type: what state replies decode into.
    """

    def __init__(self, app: Any, observation_type: type[Any], state_type: type[Any]) -> None:
        self._app = app
        self.codec = Codec(reply_type(observation_type, state_type))
        self._inbound: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._outbound: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.hello: Hello | None = None

    async def __aenter__(self) -> AppSession:
        headers = [(b"user-agent", b"openenv-check")]
        config = getattr(getattr(self._app.state, "openenv", None), "config", None)
        if config is not None and config.token:  # an app made while OPENENV_TOKEN was set
            headers.append((b"authorization", f"Bearer {config.token}".encode()))
        scope = {
            "type": "websocket",
            "path": "/ws",
            "raw_path": b"/ws",
            "headers": headers,
            "query_string": b"",
            # Our SDK's dialect, as its client asks for it (the same /ws speaks upstream
            # OpenEnv's dialect to a client asking for no subprotocol).
            "subprotocols": [SUBPROTOCOL],
            "client": ("127.0.0.1", 0),
            "server": ("127.0.0.1", 0),
            "scheme": "ws",
            "asgi": {"version": "3.0"},
        }
        self._inbound.put_nowait({"type": "websocket.connect"})
        self._task = asyncio.create_task(self._app(scope, self._inbound.get, self._outbound.put))
        accepted = await self._next()
        if accepted["type"] != "websocket.accept":
            raise SessionEnded(accepted.get("code"), "refused at the handshake")
        greeting = self.codec.decode(await self._frame())
        if not isinstance(greeting, Hello):
            raise SessionEnded(None, f"greeted with {greeting!r}, not a Hello")
        self.hello = greeting
        return self

    async def request(self, message: Any, *, text: bool = False) -> Any:
        """Send ``message`` as a JSON text frame or a msgpack binary frame; the decoded reply."""
        if text:
            frame: dict[str, Any] = {
                "type": "websocket.receive",
                "text": self.codec.encode_text(message),
            }
        else:
            frame = {"type": "websocket.receive", "bytes": self.codec.encode(message)}
        self._inbound.put_nowait(frame)
        return self.codec.decode(await self._frame())

    async def _frame(self) -> bytes | str:
        message = await self._next()
        if message["type"] == "websocket.close":
            raise SessionEnded(message.get("code"), message.get("reason", ""))
        data: bytes | str | None = message.get("bytes")
        return message.get("text", "") if data is None else data

    async def _next(self) -> dict[str, Any]:
        assert self._task is not None
        getter = asyncio.ensure_future(self._outbound.get())
        done, _ = await asyncio.wait(
            {getter, self._task}, timeout=_TIMEOUT_S, return_when="FIRST_COMPLETED"
        )
        if getter in done:
            return getter.result()
        getter.cancel()
        if self._task in done:
            exc = self._task.exception()
            raise SessionEnded(None, f"the app raised {type(exc).__name__}: {exc}") from exc
        raise SessionEnded(None, f"no reply within {_TIMEOUT_S} s")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._task is None:
            return
        self._inbound.put_nowait({"type": "websocket.disconnect", "code": 1000})
        try:
            await asyncio.wait_for(self._task, _TIMEOUT_S)
        except Exception:
            pass  # how the app ended is not this session's business once it is over
        finally:
            if not self._task.done():
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task
