"""Render the figures of ``benchmarks/results/`` as the plots the manual shows.

Reads what the benchmark scripts wrote (``sweep.csv``, ``ray.json``, ``fork.json``,
``fresh.json``) and writes PNGs into ``docs/img/`` (or ``--out``). ``make plots`` runs it, and
``make docs`` runs ``make plots`` first, so a plot is never edited or committed by hand: re-run a
benchmark, and the next docs build shows its figures.

    .venv/bin/python benchmarks/plots.py [--results benchmarks/results] [--out docs/img]
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use(): the backend is chosen first


def sweep(results: Path, out: Path) -> None:
    """Steps/s and p99 latency against sessions, ours and the Sans-I/O ceiling."""
    with (results / "sweep.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    figure, (rate, latency) = plt.subplots(1, 2, figsize=(11, 4.2))
    for provider in dict.fromkeys(r["provider"] for r in rows):
        mine = [r for r in rows if r["provider"] == provider]
        sessions = [int(r["sessions"]) for r in mine]
        rate.plot(
            sessions, [float(r["steps_per_s"]) for r in mine], "o-", label=f"openenv, {provider}"
        )
        latency.plot(
            sessions, [float(r["p99_ms"]) for r in mine], "o-", label=f"openenv, {provider}"
        )
        ceiling = [
            (s, float(r["sansio_steps_per_s"]))
            for s, r in zip(sessions, mine, strict=True)
            if r["sansio_steps_per_s"]
        ]
        if ceiling:
            rate.plot(
                *zip(*ceiling, strict=True), "x--", label=f"Sans-I/O ceiling ({provider} servers)"
            )
    for axis, title in ((rate, "echo steps/s (all sessions)"), (latency, "p99 step latency, ms")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent sessions (one client process)")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    latency.set_yscale("log")
    _save(figure, out / "sweep.png")


def ray(results: Path, out: Path) -> None:
    """Per-round steps/s on a 2-node Ray cluster against local processes, same rounds."""
    rounds = json.loads((results / "ray.json").read_text())["bench"]["rounds"]
    figure, axis = plt.subplots(figsize=(8, 3.8))
    index = range(1, len(rounds) + 1)
    for key, label in (
        ("ray", "RayProvider (tcp)"),
        ("local_tcp", "local processes, tcp"),
        ("local", "local processes, unix sockets"),
    ):
        axis.plot(index, [r[key]["steps_per_s"] for r in rounds], "o-", label=label)
    axis.set_xticks(list(index))
    axis.set_xlabel("round (back to back, 2 s each)")
    axis.set_title("64 echo sessions on 2 servers: steps/s per round")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    _save(figure, out / "ray.png")


def fork_fresh(results: Path, out: Path) -> None:
    """Fork latency against opening a new session; fresh episodes against container starts."""
    fork = json.loads((results / "fork.json").read_text())
    fresh = json.loads((results / "fresh.json").read_text())
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = list(fork)
    width = 0.35
    forks = [fork[name]["p50_ms"] for name in names]
    sessions = [fork[name]["new_session"]["p50_ms"] for name in names]
    for offset, (label, values) in enumerate((("fork", forks), ("new session", sessions))):
        left.bar([i + offset * width for i in range(len(names))], values, width, label=label)
    left.set_xticks([i + width / 2 for i in range(len(names))], names)
    left.set_ylabel("ms")
    left.set_title("fork() against a new session, p50")
    left.legend(fontsize=8)
    rounds = fresh["rounds"]
    index = range(1, len(rounds) + 1)
    right.plot(
        index, [r["container_starts_per_s"] for r in rounds], "o-", label="container starts/s"
    )
    right.plot(
        index,
        [r["fresh_episodes_per_s"] for r in rounds],
        "o-",
        label="fresh episodes/s (fresh_per_episode=True)",
    )
    right.set_xticks(list(index))
    right.set_xlabel("round")
    right.set_title("a fresh container per episode, back to back")
    right.legend(fontsize=8)
    for axis in (left, right):
        axis.grid(alpha=0.3)
    _save(figure, out / "fork_fresh.png")


def _save(figure: Any, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    print(f"wrote {path}")


PLOTS: dict[str, Callable[[Path, Path], None]] = {
    "sweep": sweep,
    "ray": ray,
    "fork_fresh": fork_fresh,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("plots", nargs="*", help=f"some of {', '.join(PLOTS)} (default: all)")
    args = parser.parse_args()
    if unknown := set(args.plots) - set(PLOTS):
        parser.error(f"no such plot: {', '.join(sorted(unknown))}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.plots or PLOTS:
        PLOTS[name](args.results, args.out)


if __name__ == "__main__":
    main()
