"""The same as in processes, in containers of ``gym-env:latest`` (one id per container, chosen
at start): exact spaces, the same trajectories as in-process, Gymnasium's checker."""

from __future__ import annotations

import os
import subprocess
import warnings

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env

from openenv.gym import remote
from openenv.gym.remote import GYM_IMAGE
from tests.conftest import docker_problem
from tests.gym.trajectories import (
    CATALOG,
    actions_for,
    assert_same,
    register_catalog,
    trajectory,
)

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module", autouse=True)
def gym_image() -> None:
    problem = docker_problem()
    if problem is None:
        inspected = subprocess.run(["docker", "image", "inspect", GYM_IMAGE], capture_output=True)
        if inspected.returncode != 0:
            problem = f"image {GYM_IMAGE} is missing (make images)"
    if problem is None:
        register_catalog()
        return
    if os.environ.get("OPENENV_REQUIRE_DOCKER") == "1":
        pytest.fail(f"OPENENV_REQUIRE_DOCKER=1 but {problem}")
    pytest.skip(f"DOCKER TESTS SKIPPED: {problem}")


@pytest.mark.parametrize("env_id", list(CATALOG))
def test_in_a_container_same_seed_same_actions_same_trajectory(env_id: str) -> None:
    local = gymnasium.make(env_id)
    served = remote(env_id, provider="docker")
    try:
        assert served.action_space == local.action_space
        actions = actions_for(local, CATALOG[env_id])
        assert_same(trajectory(served, 11, actions), trajectory(local, 11, actions))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its advice on infinite Box bounds and the like
            check_env(served, skip_render_check=True)
    finally:
        served.close()
        local.close()


def test_make_kwargs_reach_the_container() -> None:
    served = remote("FrozenLake-v1", provider="docker", map_name="8x8", is_slippery=False)
    try:
        assert served.observation_space == gymnasium.spaces.Discrete(64)
        served.reset(seed=0)
        assert served.step(2)[0] == 1
    finally:
        served.close()
