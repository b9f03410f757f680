"""Where env servers run: local processes, Docker containers."""

from openenv.providers.base import Provider, ServerHandle
from openenv.providers.process import LocalProcessProvider

__all__ = ["LocalProcessProvider", "Provider", "ServerHandle"]
