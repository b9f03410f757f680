"""Gymnasium envs for the tests, registered when this module is imported (a server finds them
as ``gym:tests.gym.gym_envs:<id>``)."""

from __future__ import annotations

import threading
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

ALL_SPACES = spaces.Dict(
    {
        "box": spaces.Box(
            low=np.array([-1.5, -np.inf, 0.0], dtype=np.float32),
            high=np.array([1.5, np.inf, 2.0], dtype=np.float32),
        ),
        "frame": spaces.Box(0, 255, (4, 3, 2), np.uint8),
        "discrete": spaces.Discrete(5, start=-2),
        "multi_discrete": spaces.MultiDiscrete([[2, 3], [4, 5]], start=[[0, 1], [1, 0]]),
        "multi_binary": spaces.MultiBinary([2, 3]),
        "text": spaces.Text(8, min_length=1, charset="abc xyz"),
        "tuple": spaces.Tuple([spaces.Discrete(2), spaces.Box(-1, 1, (2,), np.float64)]),
        "sequence": spaces.Sequence(spaces.Discrete(3)),
    }
)


class EverySpace(gymnasium.Env[Any, Any]):
    """Observations from a Dict of every space type; the action is a Tuple whose parts are
    echoed back in the next observation; rewards count the steps; ten steps terminate."""

    observation_space = ALL_SPACES
    action_space = spaces.Tuple(
        [spaces.Box(-1, 1, (3,), np.float32), spaces.MultiBinary(4), spaces.Text(4)]
    )

    def __init__(self, length: int = 10) -> None:
        self.length = length
        self._t = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.observation_space.seed(int(self.np_random.integers(2**31)))  # follows the seed
        self._t = 0
        info = {"options": options or {}, "numbers": np.arange(3, dtype=np.int16)}
        return self.observation_space.sample(), info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self._t += 1
        observation = self.observation_space.sample()
        observation["box"][:3] = np.clip(action[0], -1.5, 1.5)
        observation["text"] = "a" * len(action[2])
        info = {"t": self._t, "action_bits": action[1]}
        return observation, float(self._t), self._t >= self.length, False, info


class Unforkable(gymnasium.Env[Any, Any]):
    """CartPole-like spaces, but it holds a lock: it cannot be deep-copied."""

    observation_space = spaces.Discrete(3)
    action_space = spaces.Discrete(2)

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        return 0, {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        return 1, 0.0, False, False, {}


gymnasium.register("EverySpace-v0", entry_point=EverySpace)
gymnasium.register("Unforkable-v0", entry_point=Unforkable)
