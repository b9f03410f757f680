"""The trainers run from their own venv (``make trainer-venv``: torch CPU, TRL, transformers,
skyrl-gym): too large for the main one. Without it the tests that need it skip loudly, or fail
when ``OPENENV_REQUIRE_TRAINERS=1`` (CI) says they must run."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def trainer_python() -> str:
    """The trainer venv's interpreter; skips (or fails in CI) when it is not there."""
    python = os.environ.get("OPENENV_TRAINER_PYTHON") or str(ROOT / ".venv-trainers/bin/python")
    problem = None
    if not Path(python).exists():
        problem = f"no trainer interpreter at {python} (make trainer-venv)"
    else:
        done = subprocess.run(
            [python, "-c", "import trl, skyrl_gym, verl.tools.base_tool, openenv.integrations.trl"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        if done.returncode != 0:
            problem = f"{python} cannot import the trainers: {done.stderr[-300:]}"
    if problem is None:
        return python
    if os.environ.get("OPENENV_REQUIRE_TRAINERS") == "1":
        pytest.fail(f"OPENENV_REQUIRE_TRAINERS=1 but {problem}")
    pytest.skip(f"TRAINER TESTS SKIPPED: {problem}")


def run_in_trainer_venv(args: list[str], tmp_path: Path, timeout: float) -> dict[str, Any]:
    """Run ``python args...`` in the trainer venv from the repo root, with its temp files under
    ``tmp_path``; returns the JSON summary it wrote to ``tmp_path/summary.json``."""
    python = trainer_python()
    summary = tmp_path / "summary.json"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TMPDIR"] = str(scratch)
    done = subprocess.run(
        [python, *args, "--summary", str(summary)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    assert done.returncode == 0, f"exit {done.returncode}:\n{output}"
    leftovers = sorted(p.name for p in scratch.glob("openenv-*"))
    assert leftovers == [], f"provider temp folders outlived the run: {leftovers}"
    result: dict[str, Any] = json.loads(summary.read_text())
    return result


def assert_gone(pids: list[int]) -> None:
    """None of ``pids`` is a live env server any more."""
    from openenv import procfs

    alive = []
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "openenv" in cmdline and procfs.is_running(pid):
            alive.append((pid, cmdline))
    assert alive == [], f"env servers outlived the run: {alive}"
