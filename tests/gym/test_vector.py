"""``GymVectorEnv``: next-step autoreset as Gymnasium documents it, over an ``EnvPool``."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from openenv.gym import GymVectorEnv
from tests.gym.countdown import Countdown

READY = "Echo environment ready!"


@pytest.mark.timeout(180)
def test_eight_echo_envs_run_1000_steps_with_next_step_autoreset() -> None:
    envs = GymVectorEnv("echo", 8, max_episode_steps=10)
    try:
        assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
        observations, _ = envs.reset(seed=1)
        assert observations["echoed_message"] == (READY,) * 8
        assert observations in envs.observation_space
        steps = np.zeros(8, dtype=int)  # steps into the current episode
        resets = 0
        for t in range(1000):
            messages = tuple(f"{t}-{i}" for i in range(8))
            was_over = steps == 10
            observations, rewards, terminated, truncated, infos = envs.step({"message": messages})
            for i in range(8):
                if was_over[i]:  # the action was ignored: this step reset the env
                    assert observations["echoed_message"][i] == READY
                    assert (rewards[i], terminated[i], truncated[i]) == (0.0, False, False)
                    steps[i] = 0
                    resets += 1
                else:
                    steps[i] += 1
                    assert observations["echoed_message"][i] == messages[i]
                    assert rewards[i] == pytest.approx(len(messages[i]) / 10)
                    assert (terminated[i], truncated[i]) == (False, steps[i] == 10)
            assert infos["observation"][0].echoed_message == observations["echoed_message"][0]
        assert resets == 8 * (1000 // 11)
    finally:
        envs.close()


def test_terminated_episodes_reset_on_the_next_step_and_seeds_are_per_env() -> None:
    envs = GymVectorEnv(Countdown, 3)
    try:
        observations, _ = envs.reset(seed=0)  # env i counts down from 2 + (0 + i) % 3
        assert list(observations["left"]) == [2, 3, 4]
        tick = {"amount": np.ones(3, dtype=np.int64)}
        history = [envs.step(tick) for _ in range(4)]
        terminated = np.array([step[2] for step in history])
        assert terminated.tolist() == [
            [False, False, False],
            [True, False, False],  # env 0 ends...
            [False, True, False],  # ...resets here (from 3, unseeded), while env 1 ends
            [False, False, True],
        ]
        assert history[2][0]["left"][0] == 3 and history[2][1][0] == 0.0
        assert not history[3][3].any()  # no time limit: nothing truncates
    finally:
        envs.close()


def test_a_list_of_seeds_seeds_each_env() -> None:
    envs = GymVectorEnv("tests.gym.countdown", 2)
    try:
        observations, _ = envs.reset(seed=[5, None])
        assert list(observations["left"]) == [4, 3]
        with pytest.raises(ValueError, match="1 seeds for 2 envs"):
            envs.reset(seed=[1])
    finally:
        envs.close()


def test_an_episode_ending_as_time_runs_out_is_terminated_and_truncated() -> None:
    envs = GymVectorEnv(Countdown, 2, max_episode_steps=2)
    try:
        envs.reset(seed=[0, 1])  # 2 and 3 steps to go
        tick = {"amount": np.ones(2, dtype=np.int64)}
        envs.step(tick)
        _, _, terminated, truncated, _ = envs.step(tick)
        assert (terminated.tolist(), truncated.tolist()) == ([True, False], [True, True])
        _, rewards, terminated, truncated, _ = envs.step(tick)  # both reset now
        assert (rewards.tolist(), terminated.any(), truncated.any()) == ([0.0, 0.0], False, False)
    finally:
        envs.close()
