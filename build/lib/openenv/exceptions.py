"""Every error openenv raises, under one root.

::

    OpenEnvError
    ├── ConnectError            could not open a session (refused, unreachable, handshake failed)
    │   ├── AuthenticationError the server refused the bearer token
    │   └── CapacityError       the server is serving its maximum number of sessions
    ├── ConnectionLostError     the session's connection dropped (server or container gone)
    ├── EnvTimeoutError         a call got no reply in time (also a ``TimeoutError``)
    ├── ProtocolError           the peer sent something outside the protocol
    │   └── VersionMismatchError  the server speaks another protocol version
    ├── RemoteError             the server answered a request with an ``Error`` reply
    │   ├── InvalidMessageError   the request frame could not be decoded
    │   ├── InvalidActionError    the action did not match the env's action type
    │   ├── NotResetError         ``step`` before ``reset``
    │   ├── EnvError              the environment itself raised
    │   └── ServerTimeoutError    the environment exceeded the server's step time limit
    ├── ProviderError           a provider could not start or stop an env server
    └── PoolError               an env pool could not serve a request

Transport errors from the libraries underneath are mapped at the client boundary and chained
(``raise ConnectionLostError(...) from exc``), so callers only ever catch these.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "CapacityError",
    "ConnectError",
    "ConnectionLostError",
    "EnvError",
    "EnvTimeoutError",
    "InvalidActionError",
    "InvalidMessageError",
    "NotResetError",
    "OpenEnvError",
    "PoolError",
    "ProtocolError",
    "ProviderError",
    "RemoteError",
    "ServerTimeoutError",
    "VersionMismatchError",
    "remote_error",
]


class OpenEnvError(Exception):
    """Root of every openenv error."""


class ConnectError(OpenEnvError):
    """A session could not be opened: nothing listens, the handshake failed, or it took too long."""


class AuthenticationError(ConnectError):
    """The server refused the session at the handshake: the bearer token was missing or wrong."""


class CapacityError(ConnectError):
    """The server already serves its maximum number of sessions; retry later or elsewhere."""


class ConnectionLostError(OpenEnvError):
    """The connection of an open session dropped: the server, its process or container is gone."""


class EnvTimeoutError(OpenEnvError, TimeoutError):
    """A call got no reply within the client's timeout. A late reply is discarded, never misread."""


class ProtocolError(OpenEnvError):
    """The peer sent a frame outside the protocol (undecodable, unexpected type or request id)."""


class VersionMismatchError(ProtocolError):
    """The server speaks another protocol version than this client; upgrade one of them."""


class RemoteError(OpenEnvError):
    """The server answered a request with an ``Error`` reply; ``code`` is the stable error code."""

    code = "error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class InvalidMessageError(RemoteError):
    """The server could not decode the request frame (malformed bytes or an unknown type)."""

    code = "invalid_message"


class InvalidActionError(RemoteError):
    """The action does not match the environment's action type; the message names the field."""

    code = "invalid_action"


class NotResetError(RemoteError):
    """``step`` or ``state`` was called before the first ``reset`` of the session."""

    code = "not_reset"


class EnvError(RemoteError):
    """The environment raised while handling the request; the session remains usable."""

    code = "env_error"


class ServerTimeoutError(RemoteError):
    """The environment exceeded the server's per-step time limit."""

    code = "timeout"


class ProviderError(OpenEnvError):
    """A provider could not start, reach or stop an env server (process or container)."""


class PoolError(OpenEnvError):
    """An env pool could not serve a request (closed, or no env could be started)."""


_REMOTE_BY_CODE: dict[str, type[RemoteError]] = {
    cls.code: cls
    for cls in (
        InvalidMessageError,
        InvalidActionError,
        NotResetError,
        EnvError,
        ServerTimeoutError,
    )
}


def remote_error(code: str, message: str) -> OpenEnvError:
    """Turn an ``Error`` reply into the matching exception (``CapacityError`` for ``capacity``)."""
    if code == "capacity":
        return CapacityError(message)
    return _REMOTE_BY_CODE.get(code, RemoteError)(message, code)
