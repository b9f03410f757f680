"""The echo environment: the smallest complete env, and the throughput benchmark's subject."""

from __future__ import annotations

import uuid
from typing import Any

from envs.echo_env.models import EchoAction, EchoObservation
from openenv.server import Environment, tool
from openenv.types import State

__all__ = ["EchoEnvironment"]


class EchoEnvironment(Environment[EchoAction, EchoObservation, State]):
    """Echoes every message; the reward is the message length divided by 10. It also offers
    the tool ``echo_message`` (upstream OpenEnv's echo env is that tool)."""

    name = "echo_env"
    deterministic = True  # the same messages always echo the same way

    def __init__(self) -> None:
        self._state = State()

    def reset(
        self, seed: int | None = None, episode_id: str | None = None, **options: Any
    ) -> EchoObservation:
        self._state = State(episode_id=episode_id or uuid.uuid4().hex, step_count=0)
        return EchoObservation(echoed_message="Echo environment ready!", reward=0.0)

    def step(self, action: EchoAction) -> EchoObservation:
        self._state.step_count += 1
        message = action.message
        return EchoObservation(
            echoed_message=message, message_length=len(message), reward=len(message) / 10
        )

    @tool
    def echo_message(self, message: str) -> str:
        """Echo a message back, as upstream OpenEnv's echo env does.

        Args:
            message: the text to echo.
        """
        self._state.step_count += 1
        return message

    @property
    def state(self) -> State:
        return self._state
