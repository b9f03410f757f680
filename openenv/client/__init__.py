"""The client side: async and sync sessions with env servers."""

from openenv.client.async_client import AsyncEnvClient
from openenv.client.pool import BatchError, EnvPool, Episode, PoolStats
from openenv.client.sync_client import EnvClient

__all__ = ["AsyncEnvClient", "BatchError", "EnvClient", "EnvPool", "Episode", "PoolStats"]
