"""The client side: async and sync sessions with env servers, given their endpoints."""

from openenv.client import log_filter  # noqa: F401  (masks tokens in websockets' debug lines)
from openenv.client.async_client import AsyncEnvClient
from openenv.client.sync_client import EnvClient

__all__ = ["AsyncEnvClient", "EnvClient"]
