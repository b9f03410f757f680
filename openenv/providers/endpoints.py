"""``EndpointProvider``: env servers that already run somewhere, by address.

For pointing an :class:`~openenv.EnvPool` at servers you already have: ours, or upstream
OpenEnv's (the client falls back to its dialect). Nothing is started or stopped: ``start``
hands out the addresses in turn, so a pool of ``size`` envs spreads its sessions over them.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from openenv.endpoint import Endpoint
from openenv.exceptions import ProviderError
from openenv.providers.base import Provider, ServerHandle

__all__ = ["EndpointProvider"]


class EndpointProvider(Provider):
    """Hands out the addresses of running servers, round robin.

    Args:
        endpoints: ``ws://host:port``, ``http://host:port``, ``unix:///path.sock`` or
            :class:`Endpoint` values.
        token: bearer token for every endpoint given as a string.
    """

    def __init__(self, endpoints: Sequence[str | Endpoint], *, token: str | None = None) -> None:
        if not endpoints:
            raise ValueError("give at least one endpoint")
        self.endpoints = [Endpoint.parse(e, token) if isinstance(e, str) else e for e in endpoints]
        self._next = itertools.cycle(self.endpoints)
        self._ids = itertools.count(1)
        self._handles: dict[str, ServerHandle] = {}

    async def start(self) -> ServerHandle:
        """The next address (the server is assumed to run; a dead one fails at connect)."""
        endpoint = next(self._next)
        handle = ServerHandle(f"{endpoint}#{next(self._ids)}", endpoint)
        self._handles[handle.id] = handle
        return handle

    async def stop(self, server: ServerHandle) -> None:
        """Forget ``server``; the server itself is not ours to stop."""
        self._handles.pop(server.id, None)

    async def kill(self, server: ServerHandle) -> None:
        """Not possible: these servers are not ours.

        Raises:
            ProviderError: always.
        """
        raise ProviderError(f"{server.endpoint} was not started by this provider: cannot kill it")

    async def is_alive(self, server: ServerHandle) -> bool:
        """Whether ``server`` was handed out and not stopped: this provider cannot see the
        server's process, so a dead server shows up as failed connections instead."""
        return server.id in self._handles

    def running(self) -> list[ServerHandle]:
        return list(self._handles.values())
