"""Real GRPO runs: examples/trl_grpo.py trains a tiny local model with TRL's GRPOTrainer on
CPU three ways (the env's tools through EnvironmentFactory, with one env server killed
mid-training; an async env reward function; multi-step episodes in a rollout_func)."""

from __future__ import annotations

import pytest

from tests.integrations.conftest import assert_gone, run_in_trainer_venv

pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The three ways to train, one after the other in one process (one model build)."""
    return run_in_trainer_venv(
        [
            "examples/trl_grpo.py",
            *("--mode", "tools", "reward", "rollout"),
            *("--steps", "3", "--kill-server-at-step", "1"),
        ],
        tmp_path_factory.mktemp("trl"),
        timeout=1140,
    )


def test_grpo_with_env_tools_trains_on_env_rewards_and_survives_a_killed_server(runs) -> None:
    summary = runs["tools"]
    assert summary["steps"] == 3  # the kill did not stop the run
    # TRL's tool loop called the env's tool, and the calls were answered by the server: its
    # reward (len(message) / 10, computed server-side) is what TRL logged as the env's.
    assert summary["tool_calls"] > summary["tool_failures"]
    assert any(f for f in summary["tool_call_frequency"] if f)
    env_rewards = summary["env_rewards"]
    assert len(env_rewards) == 3 and all(r is not None for r in env_rewards)
    assert any(r > 0 for r in env_rewards)
    assert summary["rewards"] == env_rewards  # the env is the only reward source
    # The killed server was replaced and its sessions reopened at the next reset.
    assert summary["killed_server"] is not None
    assert summary["servers_replaced"] >= 1 and summary["envs_replaced"] >= 1
    # The callback closed every session and server at the end of training.
    assert summary["closed"] is True
    assert_gone([int(pid) for pid in summary["server_ids"]])


def test_grpo_with_an_async_env_reward_function(runs) -> None:
    # No tools: each completion is one echo step, scored on TRL's own async reward loop.
    summary = runs["reward"]
    assert summary["steps"] == 3
    assert all(r is not None and r > 0 for r in summary["env_rewards"])  # len(text) / 10
    assert summary["rewards"] == summary["env_rewards"]
    assert summary["closed"] is True  # closed on TRL's loop by the callback


def test_grpo_with_multi_step_episodes_in_a_rollout_function(runs) -> None:
    summary = runs["rollout"]
    assert summary["steps"] == 3
    assert summary["rollouts"] == 3 * 4
    assert all(r is not None and r > 0 for r in summary["env_rewards"])
    # The env's answers went back into the completions, masked out of the loss.
    assert summary["env_tokens"] > 0 and summary["model_tokens"] > 0
    assert summary["closed"] is True
