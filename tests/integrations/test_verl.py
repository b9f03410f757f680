"""openenv.integrations.verl with the real verl package (0.9.1): verl's own
initialize_tools_from_config loads the tools from examples/verl_tools.yaml, and
examples/verl_tools.py calls them as verl's ToolAgentLoop does (create, execute, calc_reward,
release; many at once), killing the echo servers under a live instance. verl's rollout
workers, LLM servers and the agent loop itself are not run: they need GPUs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integrations.conftest import assert_gone, run_in_trainer_venv

pytestmark = pytest.mark.timeout(300)


def test_env_tools_through_verls_tool_registry(tmp_path: Path) -> None:
    summary = run_in_trainer_venv(["examples/verl_tools.py"], tmp_path, timeout=280)
    echo = summary["schemas"]["echo"]["function"]
    assert echo["parameters"]["required"] == ["message"]
    assert echo["parameters"]["properties"]["message"]["type"] == "string"
    messages = ["hi", "hello", "hello there", "good morning", "a", "abc", "abcdef", "xyz"]
    for calls in (summary["first"], summary["after"]):  # before and after the kill
        for message, call in zip(messages, calls, strict=True):
            assert call["created"] == "Echo environment ready!"
            assert call["text"] == f"echoed_message: {message}\nmessage_length: {len(message)}"
            assert call["reward"] == pytest.approx(len(message) / 10)  # the server's reward
            assert call["total"] == pytest.approx(len(message) / 10)
    assert summary["bad"]["text"].startswith("error: echo() got unexpected arguments")
    assert summary["bad"]["metrics"] == {"failed": True}
    killed = summary["killed"]
    assert killed["text"].startswith("error: echo() failed") and killed["metrics"]["failed"]
    assert summary["servers_replaced"] == len(killed["killed"])
    task = summary["task"]  # create_kwargs reach the env's reset: the task is laid out
    assert "Count the files under logs/" in task["created"]
    assert task["text"].startswith("stdout: 17")
    assert summary["closed"] is True
    assert_gone([int(pid) for pid in summary["server_ids"]])
