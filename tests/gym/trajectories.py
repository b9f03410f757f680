"""Same seed, same actions: the trajectory of a served Gymnasium env against the same env made
in-process, compared exactly (types, dtypes, shapes, values)."""

from __future__ import annotations

from typing import Any

import gymnasium
from gymnasium.utils.env_checker import data_equivalence

#: The envs the trajectory tests cover: classic control, toy text, Atari, MiniGrid (steps).
CATALOG = {
    "CartPole-v1": 300,
    "FrozenLake-v1": 200,
    "ALE/Pong-v5": 150,
    "MiniGrid-Empty-5x5-v0": 120,
}


def register_catalog() -> None:
    """Make the Atari and MiniGrid ids known in this process, as the server does."""
    import ale_py
    import minigrid

    gymnasium.register_envs(ale_py)
    gymnasium.register_envs(minigrid)


def actions_for(env: gymnasium.Env[Any, Any], steps: int, seed: int = 7) -> list[Any]:
    space = env.action_space
    space.seed(seed)
    return [space.sample() for _ in range(steps)]


def trajectory(env: gymnasium.Env[Any, Any], seed: int, actions: list[Any]) -> list[Any]:
    """Everything the env returned: the first reset, every step, and a reset (unseeded, so
    it follows the first seed) after each episode ends."""
    out: list[Any] = [env.reset(seed=seed)]
    for action in actions:
        step = env.step(action)
        out.append(step)
        if step[2] or step[3]:
            out.append(env.reset())
    return out


def lists(value: Any) -> Any:
    """``value`` with tuples inside infos as lists: the wire has no tuples, and an info dict
    has no space to make them tuples again."""
    if isinstance(value, dict):
        return {k: lists(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [lists(v) for v in value]
    return value


def assert_same(remote: list[Any], local: list[Any]) -> None:
    assert len(remote) == len(local)
    for t, (got, want) in enumerate(zip(remote, local, strict=True)):
        *values, got_info = got
        *expected, want_info = want
        if len(expected) == 4:  # a step: rewards arrive as floats (FrozenLake's are ints)
            assert type(values[1]) is float
            expected[1] = float(expected[1])
        assert data_equivalence(tuple(values), tuple(expected), exact=True), (t, got, want)
        assert data_equivalence(got_info, lists(want_info), exact=True), (t, got_info, want_info)
