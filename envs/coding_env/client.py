"""Typed clients of the coding environment."""

from __future__ import annotations

from envs.coding_env.models import CodeAction, CodeObservation, CodeState
from openenv.launch import AsyncEnv, Env

__all__ = ["AsyncCodingEnv", "CodingEnv"]


class AsyncCodingEnv(AsyncEnv[CodeAction, CodeObservation, CodeState]):
    """Async client of the coding environment."""

    server_app = "envs.coding_env"


class CodingEnv(Env[CodeAction, CodeObservation, CodeState]):
    """Sync client of the coding environment."""

    async_client = AsyncCodingEnv
