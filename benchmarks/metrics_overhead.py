"""What server and client metrics cost: `openenv bench --sessions 256`'s closed loops against
servers counting (OPENENV_METRICS=1, the default) and not counting (OPENENV_METRICS=0), and a
third pool whose clients count too (EnvPool(registry=...)), in interleaved rounds of one run.

The three pools run side by side (each its own server processes, one per core), and each round
measures all three back to back, reversing the order every other round; a ratio is taken
within a round and reported as the median (and range) over rounds: the machine is shared, and
only measurements taken back to back see the same machine.

    .venv/bin/python benchmarks/metrics_overhead.py [--sessions 256] [--seconds 2] [--rounds 9]
        [--json benchmarks/results/metrics_overhead.json]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import statistics
import sys

from prometheus_client import CollectorRegistry

from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv import EnvPool
from openenv.bench import run_fast
from openenv.bench.references import Reference
from openenv.bench.runner import BenchOptions, _interleaved, raise_fd_limit
from openenv.providers import LocalProcessProvider


async def measure(sessions: int, seconds: float, rounds: int) -> dict[str, object]:
    raise_fd_limit()
    servers = os.cpu_count() or 1
    per_server = -(-sessions // servers)
    action = EchoAction(message="x" * 100)
    options = BenchOptions(sessions=sessions, duration=seconds, rounds=rounds, progress=False)
    variants = {
        "off": ({"OPENENV_METRICS": "0"}, None),
        "on": ({"OPENENV_METRICS": "1"}, None),
        "on+client": ({"OPENENV_METRICS": "1"}, CollectorRegistry()),
    }
    async with contextlib.AsyncExitStack() as stack:
        measured = {}
        for name, (env, registry) in variants.items():
            env = {**env, "OPENENV_MAX_SESSIONS": str(sessions)}
            provider = LocalProcessProvider("envs.echo_env", env=env)
            pool = EnvPool(
                AsyncEchoEnv,
                provider,
                sessions,
                sessions_per_server=per_server,
                registry=registry,
                show_progress=False,
            )
            await stack.enter_async_context(pool)
            await pool.reset()
            calls = [functools.partial(env.step, action) for env in pool.envs]
            measured[name] = Reference(calls, [int(s.id) for s in provider.running()])
        # "ours" is the name _interleaved takes its ratios against: here, metrics off.
        figures, ratios = await _interleaved(
            {"ours": measured["off"], "on": measured["on"], "on+client": measured["on+client"]},
            options,
        )
    # ratios hold off / variant per round: on / off is its inverse.
    overhead = {
        name: {
            "steps_per_s_ratio_median": statistics.median(1 / r for r in per_round),
            "steps_per_s_ratio_range": [
                min(1 / r for r in per_round),
                max(1 / r for r in per_round),
            ],
            "per_round": [round(1 / r, 4) for r in per_round],
        }
        for name, per_round in ratios.items()
    }
    return {
        "command": " ".join(["benchmarks/metrics_overhead.py", *sys.argv[1:]]),
        "sessions": sessions,
        "servers_per_variant": servers,
        "seconds_per_measurement": seconds,
        "rounds": rounds,
        "load_before": os.getloadavg(),
        "median_round": {
            ("off" if name == "ours" else name): dataclasses.asdict(f)
            for name, f in figures.items()
        },
        "vs_off": overhead,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    load = os.getloadavg()
    result = run_fast(measure(args.sessions, args.seconds, args.rounds))
    result["load_before"], result["load_after"] = load, os.getloadavg()
    for name, figures in result["vs_off"].items():  # type: ignore[union-attr]
        low, high = figures["steps_per_s_ratio_range"]
        print(
            f"{name:>9} / off: {figures['steps_per_s_ratio_median']:.3f} steps/s "
            f"(range {low:.3f}-{high:.3f}, {args.rounds} rounds)"
        )
    for name, figures in result["median_round"].items():  # type: ignore[union-attr]
        print(f"{name:>9}: {figures['steps_per_s']:,.0f} steps/s, p50 {figures['p50_ms']:.2f} ms")
    print(f"load average before {load}, after {result['load_after']}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)


if __name__ == "__main__":
    main()
