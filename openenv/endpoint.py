"""Where an env server listens, and the token it expects."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from openenv.exceptions import AddressError

__all__ = ["Endpoint", "is_loopback"]

_UNIX_SCHEMES = ("unix://", "ws+unix://")


@dataclass(frozen=True)
class Endpoint:
    """The address of one env server.

    Attributes:
        url: the WebSocket URL of the ``/ws`` route.
        unix_socket: path of a unix socket to connect through instead of TCP (then ``url``
            only names the route).
        token: bearer token for the handshake; never shown in ``repr``.
    """

    url: str
    unix_socket: str | None = None
    token: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, address: str, token: str | None = None) -> Endpoint:
        """Read ``ws://host:port[/ws]``, ``http://…`` or ``unix:///path/to.sock``.

        Raises:
            AddressError: ``address`` is none of these (a bare ``host:port`` included).
        """
        for scheme in _UNIX_SCHEMES:
            if address.startswith(scheme):
                return cls("ws://localhost/ws", address.removeprefix(scheme), token)
        parts = urlsplit(address)
        if parts.scheme in ("http", "https"):
            parts = parts._replace(scheme="ws" if parts.scheme == "http" else "wss")
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            hint = f"; did you mean 'ws://{address}'?" if "://" not in address else ""
            raise AddressError(
                f"not an env server address: {address!r}: want ws://host:port, "
                f"http://host:port or unix:///path/to.sock{hint}"
            )
        if parts.path in ("", "/"):
            parts = parts._replace(path="/ws")
        return cls(parts.geturl(), None, token)

    def with_token(self, token: str | None) -> Endpoint:
        """This endpoint with another token."""
        return Endpoint(self.url, self.unix_socket, token)

    def __str__(self) -> str:
        return f"unix://{self.unix_socket}" if self.unix_socket else self.url


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
