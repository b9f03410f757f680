"""Throughput and latency against the number of sessions, for local processes and containers.

Runs ``openenv bench`` (in process, one measurement after another) for each provider and
session count, writes a CSV and a PNG plot (steps/s and p99 step latency vs sessions), and
prints a Markdown table for the README.

    .venv/bin/python benchmarks/sweep.py [--sessions 1 8 64 256] [--providers process docker]
        [--duration 4] [--out benchmarks/results/sweep]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from openenv.bench import run_fast
from openenv.bench.runner import BenchOptions, BenchResult, run_bench

COLUMNS = ["provider", "sessions", "servers", "startup_s", "steps_per_s", "p50_ms", "p99_ms",
           "cpu_us_per_step", "raw_steps_per_s", "vs_raw", "errors"]  # fmt: skip


def measure(provider: str, sessions: int, duration: float, compare: bool) -> BenchResult:
    options = BenchOptions(
        provider=provider, sessions=sessions, duration=duration, compare=compare, progress=False
    )
    return run_fast(run_bench(options))


def plot(rows: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rate, latency) = plt.subplots(1, 2, figsize=(11, 4.2))
    for provider in dict.fromkeys(str(r["provider"]) for r in rows):
        mine = [r for r in rows if r["provider"] == provider]
        sessions = [int(r["sessions"]) for r in mine]  # type: ignore[call-overload]
        rate.plot(sessions, [r["steps_per_s"] for r in mine], "o-", label=f"openenv, {provider}")
        latency.plot(sessions, [r["p99_ms"] for r in mine], "o-", label=f"openenv, {provider}")
        raw = [r["raw_steps_per_s"] for r in mine]
        if all(raw):
            rate.plot(sessions, raw, "x--", label=f"raw websockets ceiling ({provider} servers)")
    for axis, title in ((rate, "echo steps/s (all sessions)"), (latency, "p99 step latency, ms")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent sessions (one client process)")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    latency.set_yscale("log")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 8, 64, 256])
    parser.add_argument("--providers", nargs="+", default=["process", "docker"])
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--out", default="benchmarks/results/sweep")
    args = parser.parse_args()

    rows: list[dict[str, object]] = []
    for provider in args.providers:
        for sessions in args.sessions:
            result = measure(provider, sessions, args.duration, compare=provider == "process")
            figures = result.as_json()
            row = {column: figures.get(column, "") for column in COLUMNS}
            rows.append(row)
            print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.with_suffix(".csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, out.with_suffix(".png"))
    print(f"\nwrote {out.with_suffix('.csv')} and {out.with_suffix('.png')}\n")
    print("| provider | sessions | start-up s | steps/s | p50 ms | p99 ms | vs raw ws |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        rate = float(str(r["steps_per_s"]))
        print(
            f"| {r['provider']} | {r['sessions']} | {r['startup_s']} | {rate:,.0f} "
            f"| {r['p50_ms']} | {r['p99_ms']} | {r['vs_raw'] or '-'} |"
        )


if __name__ == "__main__":
    main()
