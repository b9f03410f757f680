"""Server limits and credentials, read from ``OPENENV_*`` variables so that the same app is
configured the same way in a subprocess, a container or the test process."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["ServerConfig", "hide_token"]

_MIB = 1024 * 1024


_hidden: dict[str, str] = {}  # OPENENV_TOKEN, once hide_token() took it out of os.environ


def hide_token() -> None:
    """Take ``OPENENV_TOKEN`` out of ``os.environ`` into this process's memory, before any env
    code is imported: what the env starts (interpreters, shells, tools) then inherits no
    token. ``ServerConfig.from_env()`` still finds it. Idempotent.

    ``OPENENV_TOKEN_FILE`` names a file holding the token instead (how containers get it: a
    container's environment is readable by its init process's user, the env's too); the file
    is read and removed.
    """
    token = os.environ.pop("OPENENV_TOKEN", None)
    path = os.environ.pop("OPENENV_TOKEN_FILE", None)
    if path:
        with open(path) as file:
            token = file.read().strip()
        os.unlink(path)
    if token:  # an empty one means no token
        _hidden["token"] = token


def _optional_float(value: str | None, default: float | None) -> float | None:
    if value is None or value == "":
        return default
    number = float(value)
    return number if number > 0 else None


@dataclass(frozen=True)
class ServerConfig:
    """Limits of one env server.

    Attributes:
        max_sessions: concurrent sessions; one more is refused with a ``capacity`` error.
        max_frame_bytes: largest accepted frame; a larger one closes the session with 1009.
        ping_interval: seconds between WebSocket pings (None: no pings).
        ping_timeout: seconds a pong may take before a half-open connection is reaped.
        step_timeout: seconds a reset or step may take; past it the client gets a ``timeout``
            error and the session is closed, since the env's state is then unknown. None: no limit.
        token: bearer token clients must present at the handshake (None: no auth).
        fork_ticket_ttl: seconds a fork ticket stays valid; an unused one is then dropped
            with its copy of the env, freeing its session slot.
        metrics: count requests, errors and step times for ``/metrics`` (off: the route
            answers 404 and sessions count nothing).
        session_idle_timeout: seconds a session created over HTTP (``openenv/session/create``
            on ``/mcp``) may go unused, with no WebSocket attached, before it is closed (None:
            never).
        handshake_timeout: seconds a new connection (and each later request's head) may take
            to send its request line and headers; a slower or silent one is closed.
        max_connections: open connections of any kind (None: the file-descriptor limit less
            64); past it a new connection closes the oldest one still waiting for its request
            (silent connections cannot crowd out real clients), or gets 503.
        max_header_bytes: request line and headers of one request; more is answered 431 (a
            single line is capped at 8 KiB, websockets' own limit).
        max_forks_per_request: copies one ``fork`` request may ask for.
        max_parked_forks: copies of one session waiting for their tickets at once.
    """

    max_sessions: int = 256
    max_frame_bytes: int = 16 * _MIB
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    step_timeout: float | None = None
    token: str | None = field(default=None, repr=False)
    fork_ticket_ttl: float = 10.0
    metrics: bool = True
    session_idle_timeout: float | None = 300.0
    handshake_timeout: float | None = 10.0
    max_connections: int | None = None
    max_header_bytes: int = 64 * 1024
    max_forks_per_request: int = 16
    max_parked_forks: int = 64

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerConfig:
        """Read ``OPENENV_MAX_SESSIONS``, ``OPENENV_MAX_FRAME_BYTES``, ``OPENENV_PING_INTERVAL``,
        ``OPENENV_PING_TIMEOUT``, ``OPENENV_STEP_TIMEOUT``, ``OPENENV_TOKEN``,
        ``OPENENV_FORK_TICKET_TTL``, ``OPENENV_METRICS`` (0: off),
        ``OPENENV_SESSION_IDLE_TIMEOUT``, ``OPENENV_HANDSHAKE_TIMEOUT``,
        ``OPENENV_MAX_CONNECTIONS``, ``OPENENV_MAX_HEADER_BYTES``,
        ``OPENENV_MAX_FORKS_PER_REQUEST`` and ``OPENENV_MAX_PARKED_FORKS``; a value of 0 turns a
        time limit off."""
        env = os.environ if environ is None else environ
        default = cls()
        return cls(
            max_sessions=int(env.get("OPENENV_MAX_SESSIONS", default.max_sessions)),
            max_frame_bytes=int(env.get("OPENENV_MAX_FRAME_BYTES", default.max_frame_bytes)),
            ping_interval=_optional_float(env.get("OPENENV_PING_INTERVAL"), default.ping_interval),
            ping_timeout=_optional_float(env.get("OPENENV_PING_TIMEOUT"), default.ping_timeout),
            step_timeout=_optional_float(env.get("OPENENV_STEP_TIMEOUT"), default.step_timeout),
            token=env.get("OPENENV_TOKEN")
            or (_hidden.get("token") if environ is None else None)
            or None,
            fork_ticket_ttl=float(env.get("OPENENV_FORK_TICKET_TTL", default.fork_ticket_ttl)),
            metrics=env.get("OPENENV_METRICS", "1").strip().lower()
            not in ("0", "false", "no", "off"),
            session_idle_timeout=_optional_float(
                env.get("OPENENV_SESSION_IDLE_TIMEOUT"), default.session_idle_timeout
            ),
            handshake_timeout=_optional_float(
                env.get("OPENENV_HANDSHAKE_TIMEOUT"), default.handshake_timeout
            ),
            max_connections=int(env["OPENENV_MAX_CONNECTIONS"])
            if env.get("OPENENV_MAX_CONNECTIONS")
            else None,
            max_header_bytes=int(env.get("OPENENV_MAX_HEADER_BYTES", default.max_header_bytes)),
            max_forks_per_request=int(
                env.get("OPENENV_MAX_FORKS_PER_REQUEST", default.max_forks_per_request)
            ),
            max_parked_forks=int(env.get("OPENENV_MAX_PARKED_FORKS", default.max_parked_forks)),
        )
