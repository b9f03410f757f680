"""openenv.integrations.skyrl with the real skyrl-gym package: examples/skyrl_scripted.py drives
trajectories as SkyRL's generator does (make, init, step until done, close; several at once on
threads, more than there are sessions), with a scripted policy, and kills every echo server
under a live trajectory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integrations.conftest import assert_gone, run_in_trainer_venv

pytestmark = pytest.mark.timeout(300)


def test_scripted_trajectories_through_skyrl_gym(tmp_path: Path) -> None:
    summary = run_in_trainer_venv(["examples/skyrl_scripted.py"], tmp_path, timeout=280)
    messages = ["hi", "hello", "hello there", "good morning", "a", "abc", "abcdef", "xyz"]
    for trajectories in (summary["before"], summary["after"]):  # the kill happened in between
        for message, trajectory in zip(messages, trajectories, strict=True):
            assert trajectory["prompt"] == "Use the tools.\n\nEcho environment ready!"
            # The reward is the server's: len(message) / 10 for the echo, 0 for failed calls.
            assert trajectory["rewards"] == pytest.approx([len(message) / 10, 0.0, 0.0])
            assert trajectory["done"] == [False, False, True]  # text without a call ends it
            echoed, failures, _ = trajectory["answers"]
            assert echoed == f"echoed_message: {message}\nmessage_length: {len(message)}"
            assert failures.count("error: ") == 3  # bad arguments, unknown tool, bad JSON
            assert trajectory["metrics"]["tool_failures"] == 3
    assert summary["terminal"] == {"instruction_shown": True, "rewards": [0.0, 1.0], "done": True}
    killed = summary["killed"]
    assert "echo() failed" in killed["answer"] and killed["done"] is False
    assert summary["servers_replaced"] == len(killed["killed"])
    assert summary["closed"] is True
    assert_gone([int(pid) for pid in summary["server_ids"]])
