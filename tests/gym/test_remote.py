"""Gymnasium envs served by ``openenv serve gym:<id>`` in local processes: exact spaces, the same
trajectories as in-process, Gymnasium's checker, bad actions, forks, registered ids."""

from __future__ import annotations

import subprocess
import sys
import warnings
from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env, data_equivalence
from starlette.testclient import TestClient

import openenv.gym
from openenv.exceptions import EnvMismatchError, InvalidActionError, NotSupportedError
from openenv.gym import RemoteEnv, remote
from openenv.gym_wire import SPACE_KEY, spaces_of_schemas
from openenv.server.gym_env import gym_app
from tests.gym import gym_envs
from tests.gym.trajectories import (
    CATALOG,
    actions_for,
    assert_same,
    register_catalog,
    trajectory,
)

EVERY_SPACE = "tests.gym.gym_envs:EverySpace-v0"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module", autouse=True)
def catalog() -> None:
    register_catalog()


def assert_spaces_equal(got: gymnasium.Space[Any], want: gymnasium.Space[Any]) -> None:
    """Equal, and Box bounds bit for bit (Box's own == compares them with a tolerance)."""
    assert got == want
    assert type(got) is type(want)
    if isinstance(want, gymnasium.spaces.Box):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got.low, want.low) and np.array_equal(got.high, want.high)
    for name in ("spaces",):
        parts = getattr(want, name, None)
        if isinstance(parts, dict):
            for key, part in parts.items():
                assert_spaces_equal(got.spaces[key], part)  # type: ignore[attr-defined]
        elif isinstance(parts, tuple | list):
            for got_part, part in zip(got.spaces, parts, strict=True):  # type: ignore[attr-defined]
                assert_spaces_equal(got_part, part)


@pytest.mark.parametrize("env_id", list(CATALOG))
def test_same_seed_same_actions_same_trajectory_as_in_process(env_id: str) -> None:
    local = gymnasium.make(env_id)
    served = remote(env_id)
    try:
        assert_spaces_equal(served.action_space, local.action_space)
        if env_id.startswith("MiniGrid"):  # its mission space is a Python function: opaque
            assert served.observation_space["mission"].kind.endswith("MissionSpace")
            assert_spaces_equal(served.observation_space["image"], local.observation_space["image"])
        else:
            assert_spaces_equal(served.observation_space, local.observation_space)
        actions = actions_for(local, CATALOG[env_id])
        assert_same(trajectory(served, 42, actions), trajectory(local, 42, actions))
    finally:
        served.close()
        local.close()


@pytest.mark.parametrize("env_id", list(CATALOG))
def test_gymnasiums_checker_passes_on_the_served_env(env_id: str) -> None:
    served = remote(env_id)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its advice on infinite Box bounds and the like
            check_env(served, skip_render_check=True)
    finally:
        served.close()


def test_every_space_type_round_trips_and_values_keep_their_types() -> None:
    local = gymnasium.make(EVERY_SPACE)
    served = remote(EVERY_SPACE)
    try:
        assert_spaces_equal(served.observation_space, gym_envs.ALL_SPACES)
        assert_spaces_equal(served.action_space, local.action_space)
        actions = actions_for(local, 25)
        assert_same(trajectory(served, 3, actions), trajectory(local, 3, actions))
        observation, info = served.reset(seed=1, options={"level": 2})
        assert info["options"] == {"level": 2}
        assert info["numbers"].dtype == np.int16
        assert observation["frame"].dtype == np.uint8 and observation["frame"].shape == (4, 3, 2)
        assert not observation["frame"].flags.owndata  # a view of the frame received
        assert isinstance(observation["tuple"], tuple)
        assert observation in served.observation_space
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_env(served, skip_render_check=True)
    finally:
        served.close()
        local.close()


def test_make_kwargs_reach_gymnasium_make() -> None:
    served = remote("FrozenLake-v1", map_name="8x8", is_slippery=False)
    try:
        assert served.observation_space == gymnasium.spaces.Discrete(64)
        served.reset(seed=0)
        # Not slippery: right, right moves two cells along the top row.
        assert served.step(2)[0] == 1
        assert served.step(2)[0] == 2
    finally:
        served.close()


@pytest.mark.parametrize(
    ("action", "words"),
    [
        (2, "2 (int) is not in the action space Discrete(2)"),
        (1.0, "1.0 (float)"),
        (np.array([1, 0]), "shape (2,) and dtype int64 is not in the action space Discrete(2)"),
        ("left", "'left' (str)"),
    ],
)
def test_a_bad_action_is_refused_precisely_and_the_session_goes_on(action: Any, words: str) -> None:
    served = remote("CartPole-v1")
    try:
        served.reset(seed=0)
        with pytest.raises(InvalidActionError, match="action") as raised:
            served.step(action)
        assert words in str(raised.value)
        observation, reward, *_ = served.step(np.int64(1))
        assert reward == 1.0 and observation.shape == (4,)
    finally:
        served.close()


def test_a_box_action_of_the_wrong_dtype_or_shape_is_refused() -> None:
    served = remote(EVERY_SPACE)
    try:
        served.reset(seed=0)
        good = served.action_space.sample()
        wrong_shape = (np.zeros(4, np.float32), good[1], good[2])
        with pytest.raises(
            InvalidActionError, match=r"action\[0\]: an array of shape \(4,\).*must be \(3,\)"
        ):
            served.step(wrong_shape)
        wrong_dtype = (np.zeros(3, np.complex64), good[1], good[2])
        with pytest.raises(InvalidActionError, match=r"complex64.*does not cast safely to float32"):
            served.step(wrong_dtype)
        assert served.step(good)[1] == 1.0
    finally:
        served.close()


# Pong without sticky actions: ALE's cloned state leaves out the generator that draws them.
@pytest.mark.parametrize(
    ("env_id", "make_kwargs"),
    [("CartPole-v1", {}), ("ALE/Pong-v5", {"repeat_action_probability": 0.0})],
)
def test_a_fork_continues_exactly_like_its_parent(env_id: str, make_kwargs: Any) -> None:
    served = remote(env_id, **make_kwargs)
    try:
        actions = actions_for(served, 60)
        served.reset(seed=5)
        for action in actions[:20]:
            served.step(action)
        fork = served.fork()
        try:
            for action in actions[20:]:
                mine, theirs = served.step(action), fork.step(action)
                assert data_equivalence(mine, theirs, exact=True)
                if mine[2] or mine[3]:
                    break
        finally:
            fork.close()
    finally:
        served.close()


def test_an_env_that_cannot_be_copied_answers_not_supported() -> None:
    served = remote("tests.gym.gym_envs:Unforkable-v0")
    try:
        served.reset(seed=0)
        with pytest.raises(NotSupportedError, match="cannot be copied"):
            served.fork()
        assert served.step(1)[0] == 1  # the session goes on
    finally:
        served.close()


def test_the_served_id_is_checked(tmp_path: Any) -> None:
    provider = openenv.gym.gym_provider("FrozenLake-v1")
    with pytest.raises(EnvMismatchError, match="expected a server of gym:CartPole-v1"):
        remote("CartPole-v1", provider=provider)


def test_registered_ids_make_remote_envs() -> None:
    env = gymnasium.make("openenv/CartPole-v1")
    try:
        assert isinstance(env.unwrapped, RemoteEnv)
        assert_spaces_equal(env.observation_space, gymnasium.make("CartPole-v1").observation_space)
        observation, _ = env.reset(seed=0)
        assert observation.dtype == np.float32
    finally:
        env.close()
    pong = openenv.gym.register_remote("ALE/Pong-v5")
    assert pong == "openenv/ALE-Pong-v5"
    assert gymnasium.spec(pong).kwargs == {"env_id": "ALE/Pong-v5"}


def test_the_schema_route_describes_the_spaces() -> None:
    with TestClient(gym_app("CartPole-v1")) as client:
        schemas = client.get("/schema").json()
    action = schemas["action"]["properties"]["action"][SPACE_KEY]
    assert action == {"type": "Discrete", "n": 2, "start": 0}
    action_space, observation_space = spaces_of_schemas(schemas["action"], schemas["observation"])
    assert_spaces_equal(observation_space, gymnasium.make("CartPole-v1").observation_space)
    assert action_space == gymnasium.spaces.Discrete(2)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["gym:Nope-v1"], "no Gymnasium env 'Nope-v1'"),
        (["gym:CartPole-v1", "--kwargs", '{"nope": 1}'], "unexpected keyword argument 'nope'"),
        (["gym:CartPole-v1", "--kwargs", "[1]"], "--kwargs must be a JSON object"),
        (["echo", "--kwargs", '{"a": 1}'], "env 'echo' takes no options"),
    ],
)
def test_serve_refuses_what_it_cannot_serve_in_one_line(argv: list[str], words: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "openenv", "serve", *argv, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert words in done.stderr and len(done.stderr.strip().splitlines()) == 1
