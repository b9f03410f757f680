"""Chaos: kill env servers at random while a pool runs episodes, and check that nothing is lost.

Every step sends a message unique to its episode and step, and checks the echo: a reply matched
to the wrong request would show up as a mismatch. ``--kill-fraction`` of the pool's servers
(processes or containers) are killed with SIGKILL at random moments, mid-episode for the
sessions they serve.
Reports episodes completed, failed (with causes), mismatches, replacements and leftovers.

    .venv/bin/python benchmarks/chaos.py [--provider process|docker] [--sessions 32]
        [--episodes 1000] [--steps 20] [--kill-fraction 0.1] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import subprocess
import time
from collections import Counter
from typing import Any

from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv import EnvPool, Provider
from openenv.providers import LocalProcessProvider

__all__ = ["run_chaos"]


class Mismatch(AssertionError):
    """A reply that answers another request than the one sent."""


def make_provider(kind: str, pool: str) -> Provider:
    if kind == "docker":
        from openenv.providers.docker import LocalDockerProvider

        return LocalDockerProvider("echo-env:latest", pool=pool)
    return LocalProcessProvider("envs.echo_env")


async def run_chaos(
    provider_kind: str = "process",
    sessions: int = 32,
    episodes: int = 1000,
    steps: int = 20,
    kill_fraction: float = 0.1,
    seed: int = 0,
) -> dict[str, Any]:
    rng = random.Random(seed)
    pool_id = f"chaos-{os.getpid()}"
    provider = make_provider(provider_kind, pool_id)
    mismatches = 0
    kills_planned = max(1, round(sessions * kill_fraction))
    killed: list[str] = []

    tags = itertools.count(1)
    # Kills happen at random moments spread over the first 80% of the run (after the first step
    # of the episode attempts numbered in kill_at), each hitting a live server while the other
    # sessions are mid-episode: their episodes fail and are retried elsewhere. The first kill
    # hits the killing episode's own server, so at least one episode surely dies mid-way, and
    # every attempt up to that point is reached, so exactly kills_planned servers die.
    kill_at = sorted(rng.sample(range(episodes // 10, max(episodes * 8 // 10, 2)), kills_planned))

    async def episode(env: AsyncEchoEnv) -> int:
        nonlocal mismatches
        tag = next(tags)
        await env.reset()
        for step in range(steps):
            if step == min(1, steps - 1) and tag in kill_at:
                await kill_one(env if tag == kill_at[0] else None)
            message = f"{tag}:{step}:{rng.random()}"
            result = await env.step(EchoAction(message=message))
            if result.observation.echoed_message != message:
                mismatches += 1
                raise Mismatch(f"sent {message!r}, got {result.observation.echoed_message!r}")
        return steps

    async def kill_one(own: AsyncEchoEnv | None) -> None:
        alive = [s for s in provider.running() if s.id not in killed]
        mine = [s for s in alive if own is not None and str(s.endpoint) == str(own.endpoint)]
        victim = mine[0] if mine else rng.choice(alive)
        killed.append(victim.id)
        await provider.kill(victim)

    began = time.perf_counter()
    async with EnvPool(AsyncEchoEnv, provider, sessions, timeout=10) as pool:
        outcomes = await pool.run_episodes(episode, episodes, retries=2)
        stats = pool.stats
    seconds = time.perf_counter() - began
    leftovers = _leftovers(provider_kind, pool_id)
    failed = [o for o in outcomes if not o.ok]
    return {
        "provider": provider_kind,
        "sessions": sessions,
        "episodes": episodes,
        "steps_per_episode": steps,
        "servers_killed": len(killed),
        "completed": sum(o.ok for o in outcomes),
        "completed_after_retry": sum(o.ok and o.attempts > 1 for o in outcomes),
        "failed": len(failed),
        "failure_causes": dict(Counter(type(o.error).__name__ for o in failed)),
        "mismatched_replies": mismatches,
        "servers_replaced": stats.servers_replaced,
        "envs_replaced": stats.envs_replaced,
        "leftover_servers": leftovers,
        "seconds": round(seconds, 2),
    }


def _leftovers(provider_kind: str, pool_id: str) -> int:
    if provider_kind == "docker":
        done = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=openenv.pool={pool_id}"],
            capture_output=True,
            text=True,
        )
        return len(done.stdout.split())
    done = subprocess.run(
        ["pgrep", "-P", str(os.getpid()), "-f", "openenv serve"], capture_output=True, text=True
    )
    return len(done.stdout.split())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--provider", choices=["process", "docker"], default="process")
    parser.add_argument("--sessions", type=int, default=32)
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--kill-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    args = parser.parse_args()
    report = asyncio.run(
        run_chaos(
            args.provider, args.sessions, args.episodes, args.steps, args.kill_fraction, args.seed
        )
    )
    print(json.dumps(report, indent=2))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)


if __name__ == "__main__":
    main()
