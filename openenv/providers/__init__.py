"""Where env servers run: local processes, Docker containers, or servers already running."""

from openenv.providers.base import Provider, ServerHandle
from openenv.providers.endpoints import EndpointProvider
from openenv.providers.process import LocalProcessProvider

__all__ = ["EndpointProvider", "LocalProcessProvider", "Provider", "ServerHandle"]
