"""Throughput and latency against the number of sessions, for local processes and containers.

Runs ``openenv bench`` (in process, one measurement after another) for each provider and
session count, writes a CSV (``make plots`` draws it: steps/s and p99 step latency vs sessions) and
prints a Markdown table for the manual. Up to ``--compare-max`` sessions, local processes are
compared with the references of ``bench --compare`` (interleaved rounds). All sessions of a
point run from this one process; ``client KiB/session`` is its memory growth per session.

    .venv/bin/python benchmarks/sweep.py [--sessions 1 64 256 1024 4096] [--providers process]
        [--duration 2] [--rounds 3] [--compare-max 1024] [--out benchmarks/results/sweep]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

COLUMNS = ["provider", "sessions", "servers", "startup_s", "steps_per_s", "p50_ms", "p99_ms",
           "cpu_us_per_step", "server_cpu_us_per_step", "client_rss_kib_per_session",
           "sansio_steps_per_s", "vs_sansio", "vs_websockets", "vs_http", "errors"]  # fmt: skip


def measure(
    provider: str, sessions: int, duration: float, rounds: int, compare: bool
) -> dict[str, object]:
    """``openenv bench`` in a process of its own: each point's client memory starts afresh."""
    with tempfile.TemporaryDirectory(prefix="oe-sweep-") as directory:
        out = Path(directory) / "bench.json"
        command = [sys.executable, "-m", "openenv", "bench", "--provider", provider]
        command += ["--sessions", str(sessions), "--duration", str(duration)]
        command += ["--rounds", str(rounds), "--json", str(out)]
        subprocess.run([*command, *(["--compare"] if compare else [])], check=True)
        figures: dict[str, object] = json.loads(out.read_text())
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 64, 256, 1024, 4096])
    parser.add_argument("--providers", nargs="+", default=["process"])
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare-max", type=int, default=1024)
    parser.add_argument("--out", default="benchmarks/results/sweep")
    args = parser.parse_args()

    rows: list[dict[str, object]] = []
    for provider in args.providers:
        for sessions in args.sessions:
            compare = provider == "process" and sessions <= args.compare_max
            figures = measure(provider, sessions, args.duration, args.rounds, compare)
            row = {column: figures.get(column, "") for column in COLUMNS}
            rows.append(row)
            print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.with_suffix(".csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"\nwrote {out.with_suffix('.csv')}; `make plots` draws it into docs/img/sweep.png\n")
    print(
        "| provider | sessions | start-up s | steps/s | p50 ms | p99 ms | client KiB/session "
        "| vs Sans-I/O | vs websockets | vs HTTP | errors |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rate = float(str(r["steps_per_s"]))
        print(
            f"| {r['provider']} | {r['sessions']} | {r['startup_s']} | {rate:,.0f} "
            f"| {r['p50_ms']} | {r['p99_ms']} | {r['client_rss_kib_per_session']} "
            f"| {r['vs_sansio'] or '-'} | {r['vs_websockets'] or '-'} | {r['vs_http'] or '-'} "
            f"| {r['errors']} |"
        )


if __name__ == "__main__":
    main()
