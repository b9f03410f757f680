"""``openenv bench`` end to end, small and bounded (figures are not asserted: they live in
benchmarks/ and the README, measured as same-run ratios)."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def bench(*args: str, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "openenv", "bench", *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads(out.read_text())


def test_bench_with_compare_writes_consistent_figures(tmp_path: Path) -> None:
    stdout, figures = bench(
        "--sessions", "4", "--steps", "200", "--compare", "--rounds", "3", tmp_path=tmp_path
    )
    assert (figures["sessions"], figures["steps"], figures["errors"]) == (4, 800, 0)
    assert figures["servers"] == min(4, os.cpu_count() or 1)
    # Rates are what the counts and times say, and latencies are ordered.
    assert figures["steps_per_s"] == pytest.approx(800 / figures["seconds"], rel=0.01)
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert figures["cpu_us_per_step"] > 0 and figures["server_cpu_us_per_step"] > 0
    # Each ratio reported is the median of its per-round ratios, one per round.
    for name in ("sansio", "websockets", "http"):
        ratios = figures[f"{name}_round_ratios"]
        assert len(ratios) == 3
        assert figures[f"vs_{name}"] == pytest.approx(statistics.median_low(ratios), abs=0.002)
        assert figures[f"{name}_steps_per_s"] > 0
    # The figures shown are the round with the median ratio to the ceiling.
    assert figures["vs_sansio"] == pytest.approx(
        figures["steps_per_s"] / figures["sansio_steps_per_s"], rel=0.01
    )
    assert figures["http_client"] in ("aiohttp", "httpx")
    assert figures["client_rss_kib_per_session"] > 0
    shown = re.search(r"ours / Sans-I/O ceiling +=\s+([0-9.]+)  \(median of 3 interleaved", stdout)
    assert shown is not None, stdout
    assert float(shown.group(1)) == pytest.approx(figures["vs_sansio"], abs=0.006)  # 2 decimals
    assert "ours / per-step HTTP POST" in stdout


def test_bench_by_duration_without_baselines(tmp_path: Path) -> None:
    _, figures = bench(
        "--sessions", "2", "--duration", "0.5", "--message-size", "1000", tmp_path=tmp_path
    )
    assert figures["message_size"] == 1000
    assert "sansio_steps_per_s" not in figures
    assert figures["seconds"] >= 0.5  # every loop runs until the duration has passed


def test_bench_takes_any_env_package(tmp_path: Path) -> None:
    _, figures = bench(
        "--env", "envs.coding_env", "--sessions", "2", "--steps", "20", tmp_path=tmp_path
    )
    assert (figures["env"], figures["steps"], figures["errors"]) == ("envs.coding_env", 40, 0)


def test_bench_names_an_unknown_env() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "openenv", "bench", "--env", "nope_env", "--steps", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "no env 'nope_env'" in done.stderr and "echo" in done.stderr


@pytest.mark.usefixtures("docker_images")
def test_bench_on_docker(tmp_path: Path) -> None:
    _, figures = bench(
        "--provider", "docker", "--sessions", "2", "--steps", "100", tmp_path=tmp_path
    )
    assert figures["servers"] == 2
    assert figures["steps"] == 200
