"""Containers against local processes, in one run on this machine.

1. Cold start: from ``AsyncEchoEnv.from_docker_image`` to the first ``reset`` reply, over N
   starts (p50 and p90), beside the same for ``from_process``.
2. Single-session echo steps/s through a container vs the same server as a local process, both
   over a unix socket, interleaved over several rounds (medians compared as a ratio).

    .venv/bin/python benchmarks/docker_vs_process.py [--starts 10] [--seconds 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from functools import partial

# The same closed loop as the single-session benchmark (this directory is on sys.path).
from single_session import rate

from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv.bench import quantile


async def cold_start(open_env: Callable[[], Awaitable[AsyncEchoEnv]]) -> float:
    started = time.perf_counter()
    env = await open_env()
    try:
        await env.reset()
        return time.perf_counter() - started
    finally:
        await env.close()


async def main(args: argparse.Namespace) -> dict[str, float]:
    image = args.image
    docker_starts = [
        await cold_start(lambda: AsyncEchoEnv.from_docker_image(image)) for _ in range(args.starts)
    ]
    process_starts = [await cold_start(AsyncEchoEnv.from_process) for _ in range(args.starts)]
    action = EchoAction(message="x" * args.message_size)
    rates: dict[str, list[float]] = {"docker": [], "process": []}
    async with await AsyncEchoEnv.from_docker_image(image) as in_docker:
        async with await AsyncEchoEnv.from_process() as in_process:
            await in_docker.reset()
            await in_process.reset()
            for _ in range(args.rounds):
                rates["docker"].append(await rate(partial(in_docker.step, action), args.seconds))
                rates["process"].append(await rate(partial(in_process.step, action), args.seconds))
    docker_rate = statistics.median(rates["docker"])
    process_rate = statistics.median(rates["process"])
    return {
        "starts": args.starts,
        "docker_cold_start_p50_s": round(statistics.median(docker_starts), 3),
        "docker_cold_start_p90_s": round(quantile(docker_starts, 0.9), 3),
        "process_cold_start_p50_s": round(statistics.median(process_starts), 3),
        "docker_steps_per_s": round(docker_rate),
        "process_steps_per_s": round(process_rate),
        "docker_vs_process": round(docker_rate / process_rate, 3),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--image", default="echo-env:latest")
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--message-size", type=int, default=100)
    parser.add_argument("--json", help="also write the figures to this file")
    arguments = parser.parse_args()
    result = asyncio.run(main(arguments))
    print(json.dumps(result, indent=2))
    print(
        f"cold start p50 {result['docker_cold_start_p50_s']} s (target <= 0.6 s); "
        f"container = {result['docker_vs_process']:.2f} x local process steps/s (target >= 0.9)"
    )
    if arguments.json:
        with open(arguments.json, "w") as out:
            json.dump(result, out, indent=2)
