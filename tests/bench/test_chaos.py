"""A short chaos run: servers die at random under a pool; no episode is lost or misanswered."""

from __future__ import annotations

import pytest

from benchmarks.chaos import run_chaos


@pytest.mark.parametrize("provider", ["process", "docker"])
async def test_killed_servers_lose_no_episode_and_misroute_no_reply(
    provider: str, request: pytest.FixtureRequest
) -> None:
    if provider == "docker":
        request.getfixturevalue("docker_images")
    report = await run_chaos(provider, sessions=8, episodes=80, steps=5, kill_fraction=0.25)
    assert report["servers_killed"] == 2
    assert report["completed"] + report["failed"] == 80
    assert report["failed"] == 0, report["failure_causes"]
    assert report["completed_after_retry"] >= 1
    assert report["mismatched_replies"] == 0
    # A killed server whose sessions see no further call before the run ends is never replaced.
    assert 1 <= report["servers_replaced"] <= report["servers_killed"]
    assert report["leftover_servers"] == 0
