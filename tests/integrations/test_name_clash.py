"""Upstream OpenEnv's ``openenv.core`` is not ours: importing it says so and what to use."""

from __future__ import annotations

import subprocess

import pytest

from tests.integrations.conftest import ROOT, trainer_python


def test_importing_upstreams_core_names_the_clash_and_the_way_out() -> None:
    with pytest.raises(ModuleNotFoundError, match="upstream OpenEnv's module") as caught:
        import openenv.core  # noqa: F401
    assert caught.value.name == "openenv.core"  # what `except ModuleNotFoundError` code reads
    assert "openenv.integrations.trl" in str(caught.value)


@pytest.mark.timeout(180)
def test_trls_openenv_harness_fails_with_that_message() -> None:
    done = subprocess.run(
        [trainer_python(), "-c", "import trl.experimental.async_grpo.openenv_harness"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: openenv.core is upstream OpenEnv's module")
    assert "use openenv.integrations.trl" in last
