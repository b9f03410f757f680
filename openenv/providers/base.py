"""The provider interface: where env servers run, and how they are taken down again."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from openenv.cleanup import run_to_completion
from openenv.endpoint import Endpoint

if TYPE_CHECKING:
    from openenv.client.async_client import AsyncEnvClient

__all__ = ["Provider", "ServerHandle"]

ClientT = TypeVar("ClientT", bound="AsyncEnvClient[Any, Any, Any]")
ProviderT = TypeVar("ProviderT", bound="Provider")


@dataclass(frozen=True)
class ServerHandle:
    """One running env server.

    Attributes:
        id: the provider's name for it (a process id, a container id).
        endpoint: where to connect, with its token.
    """

    id: str
    endpoint: Endpoint


class Provider(ABC):
    """Starts env servers and stops them; ``close`` stops every server it still runs.

    Providers are async context managers; leaving the block stops everything they started.
    """

    @abstractmethod
    async def start(self) -> ServerHandle:
        """Start one server and return once it accepts sessions.

        Raises:
            ProviderError: it could not be started or did not become ready in time.
        """

    @abstractmethod
    async def stop(self, server: ServerHandle) -> None:
        """Stop ``server`` and free what it held. Stopping a stopped server does nothing."""

    @abstractmethod
    async def is_alive(self, server: ServerHandle) -> bool:
        """Whether ``server`` still runs (its process or container exists)."""

    @abstractmethod
    def running(self) -> list[ServerHandle]:
        """The servers started and not yet stopped."""

    async def close(self) -> None:
        """Stop every server this provider still runs, even if cancelled meanwhile."""
        stops = asyncio.gather(*(self.stop(server) for server in self.running()))
        await run_to_completion(stops)

    async def open_client(self, client_cls: type[ClientT], **client_options: Any) -> ClientT:
        """Start one server and return a connected client that owns this provider: closing
        the client closes the provider, and with it the server."""
        try:
            server = await self.start()
            client = client_cls(server.endpoint, on_close=self.close, **client_options)
            await client.connect()
        except BaseException:
            await self.close()
            raise
        return client

    async def __aenter__(self: ProviderT) -> ProviderT:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
