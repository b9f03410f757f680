"""What server and client metrics cost: `openenv bench --sessions 256`'s closed loops against
servers counting (OPENENV_METRICS=1, the default) and not counting (OPENENV_METRICS=0), and a
third pool whose clients count too (EnvPool(registry=...)), in interleaved rounds of one run.

The three pools run side by side (each its own server processes, one per core), and each round
measures all three back to back, reversing the order every other round; a ratio is taken
within a round and reported as the median (and range) over rounds: the machine is shared, and
only measurements taken back to back see the same machine. CPU per step (client process, and
the servers summed) is reported too: it moves less with the load than steps/s.

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
from openenv.bench.runner import BenchOptions, LoopFigures, _closed_loops, raise_fd_limit
from openenv.providers import LocalProcessProvider


async def measure(sessions: int, seconds: float, rounds_wanted: int) -> dict[str, object]:
    raise_fd_limit()
    servers = os.cpu_count() or 1
    per_server = -(-sessions // servers)
    action = EchoAction(message="x" * 100)
    options = BenchOptions(sessions=sessions, duration=seconds, progress=False)
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
        names = list(measured)
        rounds: dict[str, list[LoopFigures]] = {name: [] for name in names}
        for index in range(rounds_wanted):
            for name in names if index % 2 == 0 else names[::-1]:
                calls, pids = measured[name].calls, measured[name].pids
                rounds[name].append(await _closed_loops(calls, options, name, pids))
    vs_off = {}
    for name in names[1:]:
        ratios = [
            v.steps_per_s / off.steps_per_s
            for v, off in zip(rounds[name], rounds["off"], strict=True)
        ]
        vs_off[name] = {
            "steps_per_s_ratio_median": statistics.median(ratios),
            "steps_per_s_ratio_range": [min(ratios), max(ratios)],
            "per_round": [round(r, 4) for r in ratios],
        }
    cpu = {
        name: {
            "client_cpu_us_per_step_median": statistics.median(f.cpu_us_per_step for f in figures),
            "server_cpu_us_per_step_median": statistics.median(
                f.server_cpu_us_per_step or 0.0 for f in figures
            ),
            "steps_per_s_median": statistics.median(f.steps_per_s for f in figures),
        }
        for name, figures in rounds.items()
    }
    return {
        "command": " ".join(["benchmarks/metrics_overhead.py", *sys.argv[1:]]),
        "sessions": sessions,
        "servers_per_variant": servers,
        "seconds_per_measurement": seconds,
        "rounds": rounds_wanted,
        "per_variant": cpu,
        "vs_off": vs_off,
        "rounds_raw": {name: [dataclasses.asdict(f) for f in rounds[name]] for name in names},
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
    for name, figures in result["per_variant"].items():  # type: ignore[union-attr]
        print(
            f"{name:>9}: {figures['steps_per_s_median']:,.0f} steps/s; CPU per step: client "
            f"{figures['client_cpu_us_per_step_median']:.1f} µs, servers "
            f"{figures['server_cpu_us_per_step_median']:.1f} µs (medians)"
        )
    print(f"load average before {load}, after {result['load_after']}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)


if __name__ == "__main__":
    main()
