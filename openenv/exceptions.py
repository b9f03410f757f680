"""Every error openenv raises, under one root.

::

    OpenEnvError
    ├── AddressError            not an env server address (also a ``ValueError``)
    ├── ConnectError            could not open a session (refused, unreachable, handshake failed)
    │   ├── AuthenticationError the server refused the bearer token
    │   ├── CapacityError       the server is serving its maximum number of sessions
    │   └── EnvMismatchError    the server serves another env than the client's
    ├── ConnectionLostError     the session's connection dropped (server or container gone)
    ├── InheritedSessionError   a forked child called a session its parent opened
    ├── EnvTimeoutError         a call got no reply in time (also a ``TimeoutError``)
    ├── ActionTypeError         ``step`` got an action of another type (also a ``TypeError``)
    ├── ProtocolError           the peer sent something outside the protocol
    │   └── VersionMismatchError  the server speaks another protocol version
    ├── RemoteError             the server answered a request with an ``Error`` reply
    │   ├── InvalidMessageError   the request frame could not be decoded
    │   ├── InvalidActionError    the action did not match the env's action type
    │   ├── NotResetError         ``step`` before ``reset``
    │   ├── EnvError              the environment itself raised
    │   ├── ServerTimeoutError    the environment exceeded the server's step time limit
    │   └── NotSupportedError     the env or server cannot do that (e.g. fork a session)
    ├── ProviderError           a provider could not start or stop an env server
    ├── PoolError               an env pool could not serve a request
    ├── EnvNotFoundError        no env package, ``module:app`` or registered env by that name
    ├── ServeError              ``openenv serve`` cannot listen (address in use, live socket)
    └── BuildError              ``openenv build`` could not build an env image

Transport errors from the libraries underneath are mapped at the client boundary and chained
(``raise ConnectionLostError(...) from exc``), so callers only ever catch these. Each carries
the context a program acts on as attributes (a close code, the timeout, the request id, an
:class:`ErrorCode`), never only in its message.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ActionTypeError",
    "AddressError",
    "AuthenticationError",
    "BuildError",
    "CapacityError",
    "ConnectError",
    "ConnectionLostError",
    "EnvError",
    "EnvMismatchError",
    "EnvNotFoundError",
    "EnvTimeoutError",
    "ErrorCode",
    "InheritedSessionError",
    "InvalidActionError",
    "InvalidMessageError",
    "NotResetError",
    "NotSupportedError",
    "OpenEnvError",
    "PoolError",
    "ProtocolError",
    "ProviderError",
    "RemoteError",
    "ServeError",
    "ServerTimeoutError",
    "VersionMismatchError",
    "remote_error",
]


class ErrorCode(StrEnum):
    """Stable codes of the server's ``error`` replies (the wire carries the string value)."""

    INVALID_MESSAGE = "invalid_message"  # undecodable frame, unknown type, malformed request
    INVALID_ACTION = "invalid_action"  # the action does not match the env's action type
    NOT_RESET = "not_reset"  # step/state before the first reset
    ENV_ERROR = "env_error"  # the environment raised
    TIMEOUT = "timeout"  # the environment exceeded the server's step time limit
    # The server is full: at the handshake, sent once before the connection closes; in reply to
    # a fork, the session stays open.
    CAPACITY = "capacity"
    NOT_SUPPORTED = "not_supported"  # the env or server does not offer what was asked
    UNKNOWN = "unknown"  # a code this client does not know (a newer server)

    @classmethod
    def parse(cls, code: str) -> ErrorCode:
        """The member for ``code``; :attr:`UNKNOWN` for codes of newer servers."""
        try:
            return cls(code)
        except ValueError:
            return cls.UNKNOWN


class OpenEnvError(Exception):
    """Root of every openenv error."""


class ConnectError(OpenEnvError):
    """A session could not be opened: nothing listens, the handshake failed, or it took too long.

    Attributes:
        status: the HTTP status that refused the handshake, when it got that far.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthenticationError(ConnectError):
    """The server refused the session at the handshake (``status`` 401 or 403): the bearer
    token was missing or wrong."""


class CapacityError(ConnectError):
    """The server already serves its maximum number of sessions; retry later or elsewhere."""


class EnvMismatchError(ConnectError):
    """The server's greeting names other env types than the client was declared with (e.g. a
    ``CodingEnv`` client connected to an echo server).

    Attributes:
        expected: the client's action type name, e.g. ``"CodeAction"``.
        actual: the server's action type name, e.g. ``"EchoAction"``.
        server_env: the env name the server announced, e.g. ``"echo_env"``.
    """

    def __init__(self, message: str, *, expected: str, actual: str, server_env: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual
        self.server_env = server_env


class AddressError(OpenEnvError, ValueError):
    """Not an env server address; the message names the accepted forms
    (``ws://host:port``, ``http://host:port``, ``unix:///path/to.sock``)."""


class ActionTypeError(OpenEnvError, TypeError):
    """``step`` was given an action of another type than the client's ``action_type``
    (checked on the client, before anything is sent).

    Attributes:
        expected: the client's action type.
        actual: the type of the action given.
    """

    def __init__(self, message: str, *, expected: type, actual: type) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class ConnectionLostError(OpenEnvError):
    """The connection of an open session dropped: the server, its process or container is gone.

    Attributes:
        code: the close code the server sent (1009 frame too big, 1011 internal error or step
            time limit, 1013 try again later), or None when the connection dropped without a
            close frame (the server process or container died).
        reason: the close reason the server gave ("" when none).
    """

    def __init__(self, message: str, *, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class InheritedSessionError(OpenEnvError):
    """A sync session was called in a process forked from the one that opened it.

    The session belongs to the parent: its socket is shared with it, and a message from the
    child would interleave with the parent's. The parent's session goes on working; the child
    opens sessions of its own (``EchoEnv(parent_env.endpoint)`` reaches the same server).
    ``close()`` in the child only lets go of its copy: no close frame, and the server the parent
    started keeps running.

    Attributes:
        owner_pid: the id of the process that opened the session.
    """

    def __init__(self, message: str, *, owner_pid: int) -> None:
        super().__init__(message)
        self.owner_pid = owner_pid


class EnvTimeoutError(OpenEnvError, TimeoutError):
    """A call got no reply within the client's timeout. A late reply is discarded, never misread.

    Attributes:
        timeout: the client's timeout in seconds.
        request: the call that timed out (``"reset"``, ``"step"``, ``"get_state"``).
        request_id: the id of its request.
    """

    def __init__(
        self, message: str, *, timeout: float | None = None, request: str = "", request_id: int = 0
    ) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.request = request
        self.request_id = request_id


class ProtocolError(OpenEnvError):
    """The peer sent a frame outside the protocol (undecodable, unexpected type or request id)."""


class VersionMismatchError(ProtocolError):
    """The server speaks another protocol version than this client; upgrade one of them.

    Attributes:
        server_version: the version the server announced.
        client_version: the version this client speaks.
    """

    def __init__(self, message: str, *, server_version: int = 0, client_version: int = 0) -> None:
        super().__init__(message)
        self.server_version = server_version
        self.client_version = client_version


class RemoteError(OpenEnvError):
    """The server answered a request with an ``error`` reply.

    Attributes:
        code: the reply's :class:`ErrorCode`.
        request_id: the id of the request it answers (None for session-level errors).
    """

    code: ErrorCode = ErrorCode.UNKNOWN

    def __init__(
        self, message: str, code: ErrorCode | None = None, *, request_id: int | None = None
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.request_id = request_id


class InvalidMessageError(RemoteError):
    """The server could not decode the request frame (malformed bytes or an unknown type)."""

    code = ErrorCode.INVALID_MESSAGE


class InvalidActionError(RemoteError):
    """The action does not match the environment's action type; the message names the field."""

    code = ErrorCode.INVALID_ACTION


class NotResetError(RemoteError):
    """``step`` or ``state`` was called before the first ``reset`` of the session."""

    code = ErrorCode.NOT_RESET


class EnvError(RemoteError):
    """The environment raised while handling the request; the session remains usable."""

    code = ErrorCode.ENV_ERROR


class ServerTimeoutError(RemoteError):
    """The environment exceeded the server's per-step time limit; the server closes the
    session (its env's state is unknown)."""

    code = ErrorCode.TIMEOUT


class NotSupportedError(RemoteError):
    """The env or server cannot do what was asked, e.g. copy itself for a fork."""

    code = ErrorCode.NOT_SUPPORTED


class ProviderError(OpenEnvError):
    """A provider could not start, reach or stop an env server (process or container)."""


class PoolError(OpenEnvError):
    """An env pool could not serve a request (closed, or no env could be started)."""


class EnvNotFoundError(OpenEnvError):
    """No env by that name: not an importable env package, ``module:app`` or a name registered
    under the ``openenv.envs`` entry point."""


class ServeError(OpenEnvError):
    """``openenv serve`` cannot listen where it was asked to: the port is in use, or another
    server answers on the unix socket."""


class BuildError(OpenEnvError):
    """``openenv build`` could not build an env image (no Dockerfile, wheels failed to build,
    the base image is missing, or a build step failed)."""


_REMOTE_BY_CODE: dict[ErrorCode, type[RemoteError]] = {
    cls.code: cls
    for cls in (
        InvalidMessageError,
        InvalidActionError,
        NotResetError,
        EnvError,
        ServerTimeoutError,
        NotSupportedError,
    )
}


def remote_error(code: str, message: str, request_id: int | None = None) -> OpenEnvError:
    """Turn an ``error`` reply into the matching exception (``CapacityError`` for
    ``capacity``; a :class:`RemoteError` with :attr:`ErrorCode.UNKNOWN` for unknown codes)."""
    error_code = ErrorCode.parse(code)
    if error_code is ErrorCode.CAPACITY:
        return CapacityError(message)
    return _REMOTE_BY_CODE.get(error_code, RemoteError)(message, error_code, request_id=request_id)
