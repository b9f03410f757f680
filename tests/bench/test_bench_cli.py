"""``openenv bench`` end to end, small and bounded (figures are not asserted: they live in
benchmarks/ and the README, measured as same-run ratios)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def bench(*args: str, tmp_path: Path) -> tuple[str, dict[str, object]]:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "openenv", "bench", *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads(out.read_text())


def test_bench_with_compare_writes_every_figure(tmp_path: Path) -> None:
    stdout, figures = bench("--sessions", "4", "--steps", "200", "--compare", tmp_path=tmp_path)
    for key in ("sessions", "steps", "steps_per_s", "p50_ms", "p99_ms", "startup_s"):
        assert key in figures
    assert figures["sessions"] == 4
    assert figures["steps"] == 800
    assert figures["errors"] == 0
    for key in ("steps_per_s", "raw_steps_per_s", "http_steps_per_s", "cpu_us_per_step"):
        assert isinstance(figures[key], float) and figures[key] > 0, key
    assert "ours / raw websockets ceiling" in stdout
    assert "ours / per-step HTTP POST" in stdout


def test_bench_by_duration_without_baselines(tmp_path: Path) -> None:
    _, figures = bench(
        "--sessions", "2", "--duration", "0.5", "--message-size", "1000", tmp_path=tmp_path
    )
    assert figures["message_size"] == 1000
    assert "raw_steps_per_s" not in figures
    assert 0.4 < float(figures["seconds"]) < 5  # type: ignore[arg-type]


@pytest.mark.usefixtures("docker_images")
def test_bench_on_docker(tmp_path: Path) -> None:
    _, figures = bench(
        "--provider", "docker", "--sessions", "2", "--steps", "100", tmp_path=tmp_path
    )
    assert figures["servers"] == 2
    assert figures["steps"] == 200
