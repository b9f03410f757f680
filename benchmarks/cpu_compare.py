"""What ``client_cpu.py`` and ``server_cpu.py`` share: counting instructions per step with
callgrind, and the report of ours against the Sans-I/O ceiling."""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable
from pathlib import Path

CALLGRIND_SESSIONS = 8  # --sessions under callgrind unless given: each run is ~50x slower


def callgrind_total(out_file: str) -> int:
    """The instructions a callgrind run counted (its output file's ``summary`` line)."""
    summary = Path(out_file).read_text()
    return int(re.search(r"^summary: (\d+)", summary, re.M).group(1))  # type: ignore[union-attr]


def instructions_per_step(count: Callable[[int], int], steps: int, sessions: int) -> float:
    """Instructions per step from ``count(n)`` (a whole run of ``n`` steps per session),
    taken at two lengths so that start-up and shut-down cancel out."""
    short, long = count(steps // 4), count(steps)
    return (long - short) / ((steps - steps // 4) * sessions)


def report(side: str, per_step: dict[str, list[float]]) -> None:
    """Print ours / sansio CPU per step: the median of the per-round ratios, and its range."""
    ratios = [o / s for o, s in zip(per_step["ours"], per_step["sansio"], strict=True)]
    print(
        f"{side} CPU per step, ours / sansio: median {statistics.median(ratios):.2f} "
        f"({min(ratios):.2f}-{max(ratios):.2f}); ours {statistics.median(per_step['ours']):.1f}"
        f" µs, sansio {statistics.median(per_step['sansio']):.1f} µs"
    )
