"""The provider interface: where env servers run, and how they are taken down again."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

from openenv.cleanup import run_to_completion
from openenv.endpoint import Endpoint

__all__ = ["Provider", "ServerHandle"]

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
    They know nothing of clients: they hand out endpoints, and ``openenv.launch`` connects.

    Attributes:
        handle_sigterm: whether starting a server makes SIGTERM unwind the program like Ctrl-C
            (:func:`openenv.cleanup.exit_on_sigterm`), so that what it started is removed.
            Only the main thread can install that handler: sync launchers, whose servers start
            on the client loop's thread, install it in the caller's thread.
    """

    handle_sigterm: bool = False

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
    async def kill(self, server: ServerHandle) -> None:
        """End ``server`` abruptly, as a crash would (SIGKILL, no clean-up inside it): for
        chaos runs and tests of recovery. ``stop`` must still be called to free what it held.
        """

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

    async def __aenter__(self: ProviderT) -> ProviderT:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
