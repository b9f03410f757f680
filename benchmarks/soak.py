"""Soak: many sessions stepping for minutes; memory of server and client, errors, steps/s.

Every session runs its own closed loop on local server processes. Every ``--sample`` seconds
the script records steps/s over the last interval and the resident memory of the client and of
the servers; memory growth is measured from the first sample after ``--warmup`` to the last.

    .venv/bin/python benchmarks/soak.py [--sessions 256] [--minutes 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv import EnvPool, OpenEnvError, procfs
from openenv.bench import run_fast
from openenv.providers import LocalProcessProvider


async def soak(
    sessions: int, seconds: float, sample_s: float, warmup_s: float, servers: int
) -> dict[str, Any]:
    provider = LocalProcessProvider("envs.echo_env", env={"OPENENV_MAX_SESSIONS": str(sessions)})
    per_server = -(-sessions // servers)
    steps = 0
    errors: dict[str, int] = {}
    samples: list[dict[str, float]] = []
    async with EnvPool(AsyncEchoEnv, provider, sessions, sessions_per_server=per_server) as pool:
        await pool.reset()
        server_pids = [int(s.id) for s in provider.running()]
        deadline = time.monotonic() + seconds
        action = EchoAction(message="x" * 100)

        async def loop(env: AsyncEchoEnv) -> None:
            nonlocal steps
            while time.monotonic() < deadline:
                try:
                    await env.step(action)
                    steps += 1
                except OpenEnvError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

        async def sampler() -> None:
            began, last_steps, last_time = time.monotonic(), 0, time.monotonic()
            while time.monotonic() < deadline:
                await asyncio.sleep(sample_s)
                now = time.monotonic()
                samples.append(
                    {
                        "t_s": round(now - began, 1),
                        "steps_per_s": round((steps - last_steps) / (now - last_time)),
                        "client_rss_mib": round(procfs.rss_kib(os.getpid()) / 1024, 1),
                        "servers_rss_mib": round(
                            sum(procfs.rss_kib(p) for p in server_pids) / 1024, 1
                        ),
                    }
                )
                print(json.dumps(samples[-1]), flush=True)
                last_steps, last_time = steps, now

        await asyncio.gather(sampler(), *(loop(env) for env in pool.envs))
    steady = [s for s in samples if s["t_s"] >= warmup_s] or samples
    first, last = steady[0], steady[-1]

    def growth(key: str) -> float:
        return round((last[key] - first[key]) / first[key] * 100, 2)

    return {
        "sessions": sessions,
        "servers": servers,
        "seconds": seconds,
        "steps": steps,
        "mean_steps_per_s": round(steps / seconds),
        "errors": errors,
        "client_rss_growth_pct": growth("client_rss_mib"),
        "servers_rss_growth_pct": growth("servers_rss_mib"),
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=256)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before growth counts")
    parser.add_argument("--servers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json")
    args = parser.parse_args()
    report = run_fast(
        soak(args.sessions, args.minutes * 60, args.sample, args.warmup, args.servers)
    )
    summary = {k: v for k, v in report.items() if k != "samples"}
    print(json.dumps(summary, indent=2))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)


if __name__ == "__main__":
    main()
