"""Upstream OpenEnv's scaling-benchmark env, written on our API: reset returns at once, each step
sleeps ``wait_seconds`` (default 1.0) without holding a thread. Served as
``openenv serve benchmarks.upstream.sleep_env:app``."""

from __future__ import annotations

import asyncio
from typing import Any

from openenv.server import Environment, create_app
from openenv.types import Action, Observation, State


class SleepAction(Action):
    wait_seconds: float = 1.0


class SleepObservation(Observation):
    slept: float = 0.0


class SleepEnvironment(Environment[SleepAction, SleepObservation, State]):
    """Sleeps on every step: the benchmark measures the server, not the env."""

    def __init__(self) -> None:
        self._state = State()

    def reset(
        self, seed: int | None = None, episode_id: str | None = None, **options: Any
    ) -> SleepObservation:
        self._state = State(episode_id=episode_id)
        return SleepObservation()

    async def step(self, action: SleepAction) -> SleepObservation:
        await asyncio.sleep(action.wait_seconds)
        self._state.step_count += 1
        return SleepObservation(slept=action.wait_seconds, reward=1.0)

    @property
    def state(self) -> State:
        return self._state


app = create_app(SleepEnvironment)
