"""``GymEnv``: Gymnasium's own checker passes on the echo env; ids register and make sessions
on a process, a container or a running server."""

from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import openenv.gym
from envs.echo_env import EchoAction, EchoEnv
from openenv.exceptions import EnvNotFoundError
from openenv.gym import GymEnv, make_env, register
from openenv.gym.env import env_classes
from tests.conftest import openenv_children
from tests.gym.countdown import Countdown


def test_gymnasiums_check_env_passes_on_echo() -> None:
    env = gymnasium.make("openenv/echo-v0")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a Gymnasium warning is a failure here
            check_env(env.unwrapped)
    finally:
        env.close()
    assert openenv_children() == []  # the check's own sessions closed their servers too


def test_reset_and_step_read_like_gymnasium() -> None:
    env = gymnasium.make("openenv/echo-v0")
    try:
        observation, info = env.reset(seed=3)
        assert observation["echoed_message"] == "Echo environment ready!"
        assert info["observation"].echoed_message == "Echo environment ready!"
        observation, reward, terminated, truncated, info = env.step({"message": "0123456789"})
        assert (observation["echoed_message"], reward, terminated, truncated) == (
            "0123456789", 1.0, False, False,
        )  # fmt: skip
        assert observation["message_length"] == np.int64(10)
        assert env.step(EchoAction(message="typed"))[0]["echoed_message"] == "typed"
    finally:
        env.close()


def test_registered_ids_take_a_time_limit_and_end_episodes() -> None:
    register("tests/countdown-v0", "tests.gym.countdown", max_episode_steps=2)
    env = gymnasium.make("tests/countdown-v0")
    try:
        assert env.reset(seed=2)[0] == {"left": np.int64(4)}  # 2 + 2 % 3
        assert env.step({"amount": np.int64(1)})[2:4] == (False, False)
        assert env.step({"amount": np.int64(1)})[2:4] == (False, True)  # TimeLimit truncates
        env.reset(seed=0)  # 2 steps to go
        env.step({"amount": np.int64(1)})
        assert env.step({"amount": np.int64(1)})[2:4] == (True, True)  # ends as time runs out
    finally:
        env.close()
        gymnasium.registry.pop("tests/countdown-v0")


def test_make_env_connects_to_a_running_server() -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "openenv", "serve", "envs.echo_env", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        address = server.stdout.readline().split()[-1]  # "openenv: serving on ws://..."
        env = make_env("echo", endpoint=address)
        assert isinstance(env, GymEnv)
        env.reset()
        assert env.step({"message": "hi"})[0]["echoed_message"] == "hi"
        env.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_env_classes_resolve_names_packages_and_classes() -> None:
    assert env_classes("echo") == (EchoEnv, "echo-env:latest")
    assert env_classes("envs.echo_env") == (EchoEnv, "echo-env:latest")
    assert env_classes(EchoEnv) == (EchoEnv, "echo-env:latest")
    assert env_classes(Countdown) == (Countdown, "countdown:latest")
    with pytest.raises(ValueError, match="launch must be 'process' or 'docker'"):
        make_env("echo", launch="ray")  # type: ignore[arg-type]
    with pytest.raises(EnvNotFoundError, match="no env 'nope'"):
        make_env("nope")


@pytest.mark.usefixtures("docker_images")
def test_echo_in_a_container() -> None:
    env = gymnasium.make("openenv/echo-v0", launch="docker")
    try:
        env.reset()
        assert env.step({"message": "boxed"})[0]["echoed_message"] == "boxed"
    finally:
        env.close()


def test_installed_envs_are_registered() -> None:
    assert {"openenv/echo-v0", "openenv/coding-v0"} <= set(openenv.gym.register_installed())
    assert {"openenv/echo-v0", "openenv/coding-v0"} <= set(gymnasium.registry)
