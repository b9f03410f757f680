"""A real GRPO run: examples/trl_grpo.py trains a tiny local model with TRL's GRPOTrainer on
CPU, its rollouts calling the echo env's tool over real sessions, with one env server killed
mid-training."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integrations.conftest import assert_gone, run_in_trainer_venv

pytestmark = pytest.mark.timeout(900)


def test_grpo_trains_on_env_rewards_and_survives_a_killed_server(tmp_path: Path) -> None:
    steps = 3
    summary = run_in_trainer_venv(
        ["examples/trl_grpo.py", "--steps", str(steps), "--kill-server-at-step", "1"],
        tmp_path,
        timeout=840,
    )
    assert summary["steps"] == steps  # the kill did not stop the run
    # TRL's tool loop called the env's tool, and the calls were answered by the server: its
    # reward (len(message) / 10, computed server-side) is what TRL logged as the env's.
    assert summary["tool_calls"] > summary["tool_failures"]
    assert any(f for f in summary["tool_call_frequency"] if f)
    env_rewards = summary["env_rewards"]
    assert len(env_rewards) == steps and all(r is not None for r in env_rewards)
    assert any(r > 0 for r in env_rewards)
    assert summary["rewards"] == env_rewards  # the env is the only reward source
    # The killed server was replaced and its sessions reopened at the next reset.
    assert summary["killed_server"] is not None
    assert summary["servers_replaced"] >= 1 and summary["envs_replaced"] >= 1
    # The callback closed every session and server at the end of training.
    assert summary["closed"] is True
    assert_gone([int(pid) for pid in summary["server_ids"]])
