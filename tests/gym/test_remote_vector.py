"""``gymnasium.make_vec`` on openenv ids: one ``GymVectorEnv`` over one ``EnvPool``, the same
results as Gymnasium's own vector env, and a run that outlives a killed server."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import data_equivalence

import openenv.gym
from openenv.client.portal import run_sync
from openenv.gym import GymVectorEnv

pytestmark = pytest.mark.timeout(180)


def test_make_vec_on_a_served_id_equals_gymnasiums_own_vector_env() -> None:
    served = gymnasium.make_vec("openenv/CartPole-v1", num_envs=4)
    local = gymnasium.make_vec("CartPole-v1", num_envs=4, vectorization_mode="sync")
    try:
        assert isinstance(served, GymVectorEnv)
        assert len(served.pool.servers) == 1  # one server process, four sessions
        assert served.metadata["autoreset_mode"] == local.metadata["autoreset_mode"]
        assert served.single_observation_space == local.single_observation_space
        assert data_equivalence(served.reset(seed=9), local.reset(seed=9), exact=True)
        rng = np.random.default_rng(0)
        ended = 0
        for _ in range(400):
            actions = rng.integers(0, 2, size=4)
            got, want = served.step(actions), local.step(actions)
            assert data_equivalence(got, want, exact=True)
            ended += int(np.sum(got[2] | got[3]))
        assert ended > 4  # autoresets happened, and matched Gymnasium's
    finally:
        served.close()
        local.close()


def test_make_vec_on_an_installed_env_builds_one_pool() -> None:
    envs = gymnasium.make_vec("openenv/echo-v0", num_envs=3)
    try:
        assert isinstance(envs, GymVectorEnv)
        assert len(envs.pool) == 3
        observations, _ = envs.reset(seed=0)
        assert observations["echoed_message"] == ("Echo environment ready!",) * 3
    finally:
        envs.close()


def test_killing_a_server_under_a_vector_env_the_run_goes_on() -> None:
    envs = openenv.gym.vector.remote_vector_env(
        4, "CartPole-v1", pool_options={"sessions_per_server": 2}
    )
    try:
        assert len(envs.pool.servers) == 2
        envs.reset(seed=0)
        ones = np.ones(4, dtype=np.int64)
        for _ in range(3):
            envs.step(ones)
        doomed = envs.pool.server_of(0)
        on_doomed = [i for i in range(4) if envs.pool.server_of(i).id == doomed.id]
        run_sync(envs.pool.provider.kill(doomed))
        observations, rewards, terminated, truncated, infos = envs.step(ones)
        replaced = infos["env_replaced"] & infos["_env_replaced"]
        assert sorted(np.flatnonzero(replaced)) == on_doomed
        assert truncated[on_doomed].all() and not terminated[on_doomed].any()
        assert (rewards[on_doomed] == 0.0).all()
        assert observations in envs.observation_space
        assert envs.pool.stats.envs_replaced == len(on_doomed)
        assert all(envs.pool.server_of(i).id != doomed.id for i in range(4))
        for _ in range(50):  # the run goes on; the replaced envs reset on the next step
            observations, rewards, terminated, truncated, infos = envs.step(ones)
            assert "env_replaced" not in infos
    finally:
        envs.close()
