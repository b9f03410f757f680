"""The launch layer: where providers (servers) and clients (sessions) meet.

``client/`` knows only endpoints and ``providers/`` knows nothing of clients; this layer joins
them: :class:`AsyncEnv` / :class:`Env` are the clients with constructors that start a server
first (``from_process``, ``from_docker_image``, ``from_provider``), and :class:`EnvPool` drives
many sessions on servers from any provider.
"""

from openenv.launch.envs import AsyncEnv, Env, open_client
from openenv.launch.pool import BatchError, EnvPool, Episode, PoolStats

__all__ = ["AsyncEnv", "BatchError", "Env", "EnvPool", "Episode", "PoolStats", "open_client"]
