"""A Gymnasium-style checker every env in ``envs/`` must pass, run on the env class directly."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Sequence
from typing import Any

import msgspec

from openenv.server import Environment
from openenv.types import Action, Observation, State


def _call(value: Any) -> Any:
    return asyncio.run(value) if inspect.isawaitable(value) else value


def check_environment(env_cls: type[Environment[Any, Any, Any]], actions: Sequence[Action]) -> None:
    """Assert the contract: declared types, typed reset/step/state, JSON-schema-able types,
    state bookkeeping, and that observations survive the wire."""
    assert issubclass(env_cls.action_type, Action)
    assert issubclass(env_cls.observation_type, Observation)
    assert issubclass(env_cls.state_type, State)
    for struct in (env_cls.action_type, env_cls.observation_type, env_cls.state_type):
        msgspec.json.schema(struct)
    env = env_cls()
    try:
        first = _call(env.reset(seed=0, episode_id="checker"))
        assert isinstance(first, env_cls.observation_type)
        state = env.state
        assert isinstance(state, env_cls.state_type)
        assert (state.episode_id, state.step_count) == ("checker", 0)
        for count, action in enumerate(actions, start=1):
            assert isinstance(action, env_cls.action_type)
            observation = _call(env.step(action))
            assert isinstance(observation, env_cls.observation_type)
            assert observation.reward is None or isinstance(observation.reward, float)
            wire = msgspec.msgpack.encode(observation)
            assert msgspec.msgpack.decode(wire, type=env_cls.observation_type) == observation
            assert env.state.step_count == count
        _call(env.reset())
        assert env.state.step_count == 0
    finally:
        _call(env.close())
