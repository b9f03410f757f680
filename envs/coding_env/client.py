"""Typed clients of the coding environment."""

from __future__ import annotations

from envs.coding_env.models import CodeAction, CodeObservation, CodeState
from openenv.client import AsyncEnvClient, EnvClient

__all__ = ["AsyncCodingEnv", "CodingEnv"]


class AsyncCodingEnv(AsyncEnvClient[CodeAction, CodeObservation, CodeState]):
    """Async client of the coding environment."""

    action_type = CodeAction
    observation_type = CodeObservation
    state_type = CodeState
    server_app = "envs.coding_env"


class CodingEnv(EnvClient[CodeAction, CodeObservation, CodeState]):
    """Sync client of the coding environment."""

    async_client = AsyncCodingEnv
