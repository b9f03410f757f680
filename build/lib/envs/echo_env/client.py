"""Typed clients of the echo environment."""

from __future__ import annotations

from envs.echo_env.models import EchoAction, EchoObservation
from openenv.client import AsyncEnvClient, EnvClient
from openenv.types import State

__all__ = ["AsyncEchoEnv", "EchoEnv"]


class AsyncEchoEnv(AsyncEnvClient[EchoAction, EchoObservation, State]):
    """Async client of the echo environment."""

    action_type = EchoAction
    observation_type = EchoObservation
    state_type = State
    server_app = "envs.echo_env"


class EchoEnv(EnvClient[EchoAction, EchoObservation, State]):
    """Sync client of the echo environment."""

    async_client = AsyncEchoEnv
