"""A countdown env whose episodes end by themselves (echo's never do), for the Gymnasium
adapters' termination and autoreset tests; served by subprocesses as
``tests.gym.countdown:app``. ``reset(seed=s)`` counts down from ``2 + s % 3`` (3 unseeded)."""

from __future__ import annotations

from typing import Any

from openenv.launch import AsyncEnv, Env
from openenv.server import Environment, create_app
from openenv.types import Action, Observation, State


class Tick(Action):
    amount: int = 1


class Left(Observation):
    left: int = 0


class CountdownEnvironment(Environment[Tick, Left, State]):
    deterministic = True

    def __init__(self) -> None:
        self._state = State()
        self._left = 0

    def reset(self, seed: int | None = None, episode_id: str | None = None, **o: Any) -> Left:
        self._state = State(episode_id=episode_id)
        self._left = 3 if seed is None else 2 + seed % 3
        return Left(left=self._left, reward=0.0)

    def step(self, action: Tick) -> Left:
        if self._left == 0:
            raise RuntimeError("the countdown is over; reset")
        self._state.step_count += 1
        self._left = max(0, self._left - action.amount)
        return Left(left=self._left, reward=1.0, done=self._left == 0)

    @property
    def state(self) -> State:
        return self._state


class AsyncCountdown(AsyncEnv[Tick, Left, State]):
    server_app = "tests.gym.countdown:app"


class Countdown(Env[Tick, Left, State]):
    async_client = AsyncCountdown


app = create_app(CountdownEnvironment)
