"""Gymnasium vector envs over echo: ``GymVectorEnv`` (one EnvPool, the N sessions stepped
concurrently) vs ``gymnasium.vector.SyncVectorEnv`` over N ``GymEnv`` (one session each,
stepped one after another), both against one local echo server process with N sessions.

Both are measured back to back in each round (order alternating); the ratio is the median of the
per-round ratios (the machine is shared and noisy: only measurements taken back to back see the
same machine). Env steps/s counts every sub-env's step.

    .venv/bin/python benchmarks/gym_vector.py [--envs 8] [--seconds 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import gymnasium

from envs.echo_env import EchoEnv
from openenv.client.portal import run_sync
from openenv.gym import GymEnv, GymVectorEnv
from openenv.providers import LocalProcessProvider


def steps_per_s(envs: Any, num_envs: int, seconds: float) -> float:
    envs.reset(seed=0)
    actions = {"message": ("x" * 100,) * num_envs}
    for _ in range(50):
        envs.step(actions)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(20):
            envs.step(actions)
        count += 20
    return count * num_envs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default="benchmarks/results/gym_vector.json")
    args = parser.parse_args()
    n = args.envs

    pooled = GymVectorEnv("echo", n, max_episode_steps=10**9)
    provider = LocalProcessProvider("envs.echo_env")
    server = run_sync(provider.start())
    endpoint = server.endpoint
    sequential = gymnasium.vector.SyncVectorEnv(
        [lambda: GymEnv(EchoEnv(endpoint)) for _ in range(n)], autoreset_mode="NextStep"
    )
    rounds = []
    try:
        for index in range(args.rounds):
            order = ["pool", "sync"] if index % 2 == 0 else ["sync", "pool"]
            rates = {}
            for name in order:
                envs = pooled if name == "pool" else sequential
                rates[name] = steps_per_s(envs, n, args.seconds)
            rounds.append(rates)
            print(
                f"round {index + 1}: GymVectorEnv {rates['pool']:,.0f} env steps/s, "
                f"SyncVectorEnv {rates['sync']:,.0f} ({rates['pool'] / rates['sync']:.2f} x)"
            )
    finally:
        pooled.close()
        sequential.close()
        run_sync(provider.close())
    ratios = [r["pool"] / r["sync"] for r in rounds]
    median = statistics.median(ratios)
    middle = rounds[ratios.index(sorted(ratios)[len(ratios) // 2])]
    print(
        f"{n} envs: GymVectorEnv / SyncVectorEnv = {median:.2f} x (median of {len(ratios)} "
        f"rounds, {min(ratios):.2f}-{max(ratios):.2f}); that round: {middle['pool']:,.0f} vs "
        f"{middle['sync']:,.0f} env steps/s"
    )
    result = {"envs": n, "seconds": args.seconds, "rounds": rounds, "ratios": ratios}
    Path(args.json).write_text(json.dumps({**result, "median_ratio": median}, indent=2) + "\n")


if __name__ == "__main__":
    main()
