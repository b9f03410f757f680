"""The env checker runs over every env in ``envs/``, as ``openenv validate`` would."""

from __future__ import annotations

from pathlib import Path

import pytest

from openenv.testing import check_env

ENVS = sorted(
    path.name
    for path in (Path(__file__).parents[2] / "envs").iterdir()
    if (path / "server" / "app.py").is_file()
)


def test_the_envs_are_found() -> None:
    assert {"echo_env", "coding_env"} <= set(ENVS)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ENVS)
def test_every_env_keeps_every_rule(name: str) -> None:
    report = check_env(f"envs.{name}")
    assert report.steps > 0
