"""Typed clients of the echo environment."""

from __future__ import annotations

from envs.echo_env.models import EchoAction, EchoObservation
from openenv.launch import AsyncEnv, Env
from openenv.types import State

__all__ = ["AsyncEchoEnv", "EchoEnv"]


class AsyncEchoEnv(AsyncEnv[EchoAction, EchoObservation, State]):
    """Async client of the echo environment."""

    server_app = "envs.echo_env"


class EchoEnv(Env[EchoAction, EchoObservation, State]):
    """Sync client of the echo environment."""

    async_client = AsyncEchoEnv
