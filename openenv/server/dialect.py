"""What a session speaks: frames in, request handling, frames out, whatever the transport.

A :class:`Dialect` turns each received frame into the reply frame to send, with no I/O of its
own. The transports that carry a session (the direct one on uvicorn's connection, see
:mod:`openenv.server.ws_protocol`, and plain ASGI, see :func:`serve_asgi`) drive any dialect the
same way, so a session can speak another wire format (chosen by WebSocket subprotocol, say)
without touching the hot path.

A reply that is ready at once is returned as is (``bytes`` for a binary frame, ``str`` for a
text frame) and written in the same call that parsed the request: no task, queue or future per
message. Only a request that must wait (an async env, a blocking env on its thread) returns an
awaitable of the reply, and the transport then holds later frames until it resolves: one
request at a time, replies in order.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol, TypeGuard, cast

from starlette.types import Receive, Send

__all__ = ["Closing", "Dialect", "Outgoing", "Reply", "is_ready", "serve_asgi"]


@dataclass(frozen=True, slots=True)
class Closing:
    """Ends the session: send ``frame`` (if any), then close with ``code`` and ``reason``."""

    code: int
    reason: str = ""
    frame: bytes | str | None = None


Outgoing = bytes | str | Closing
"""A reply frame (binary or text), or the end of the session."""

Reply = Outgoing | Awaitable[Outgoing]


class Dialect(Protocol):
    """One session's request handling; one instance per connection."""

    def greeting(self) -> bytes | str | None:
        """The frame sent once the connection is open, if any."""

    def handle(self, frame: bytes | str) -> Reply:
        """The reply to ``frame`` (an awaitable when it cannot be ready at once).

        Must not raise for anything a client sends: bad input becomes an error reply.
        """

    async def release(self) -> None:
        """Free what the session holds (its env); called once, after it ended."""


def is_ready(reply: Reply) -> TypeGuard[Outgoing]:
    """Whether ``reply`` can be sent as is (else it is an awaitable to wait for)."""
    kind = reply.__class__
    return kind is bytes or kind is str or kind is Closing


async def serve_asgi(dialect: Dialect, receive: Receive, send: Send) -> None:
    """Serve ``dialect`` over plain ASGI messages until the client goes away.

    The path for any ASGI server without the direct transport (Starlette's test client,
    other servers); it behaves the same, at the cost of a dict and a coroutine hop per frame.
    """
    try:
        greeting = dialect.greeting()
        if greeting is not None:
            await send(_frame_message(greeting))
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":  # websocket.disconnect
                return
            frame: bytes | str | None = message.get("bytes")
            if frame is None:
                frame = message.get("text") or ""
            reply = dialect.handle(frame)
            outgoing = reply if is_ready(reply) else await cast(Awaitable[Outgoing], reply)
            if isinstance(outgoing, Closing):
                if outgoing.frame is not None:
                    await send(_frame_message(outgoing.frame))
                await send(
                    {"type": "websocket.close", "code": outgoing.code, "reason": outgoing.reason}
                )
                return
            await send(_frame_message(outgoing))
    except OSError:
        pass  # the client went away (uvicorn's ClientDisconnected); nothing to answer


def _frame_message(frame: bytes | str) -> dict[str, Any]:
    if isinstance(frame, str):
        return {"type": "websocket.send", "text": frame}
    return {"type": "websocket.send", "bytes": frame}
