"""Fork latency and fresh-server-per-episode throughput.

``fork``: p50/p99 of ``await env.fork()`` (the ``fork`` request, the copy, a new connection
with the ticket and its greeting: the fork is ready to step when it returns), with the server
in a process of its own: the echo env, and the coding env holding ~100 MB of Python objects
(the worker's RSS is reported). Forks are closed outside the timed part, with a pause after
each close; interleaved with the forks, opening a plain new session on the same server is
timed too (``new_session``): the floor a fork cannot beat, under the same load.

``fresh``: Docker containers, one run:

1. acquire-to-ready from spares: episodes paced so that a spare is there; the time from
   ``pool.acquire()`` until the env is in hand (session open);
2. ``--rounds`` rounds back to back, each: this machine's container start rate (``--starts``
   containers started ``--concurrency`` at a time through the same provider: create, start,
   wait until it accepts sessions; then stopped), then ``--episodes`` fresh episodes (reset +
   ``--steps`` steps) as fast as ``--size`` workers go, every one on a container no one used,
   stopped after it, timed until the spares are all ready again (as the round began). The
   figure is the median over rounds of fresh episodes/s divided by the start rate of the same
   round (the machine's load drifts between rounds).

    .venv/bin/python benchmarks/fork_fresh.py fork [--forks 200] [--coding-forks 40]
    .venv/bin/python benchmarks/fork_fresh.py fresh [--image echo-env:latest] [--starts 12]
        [--concurrency 4] [--spares 4] [--size 4] [--episodes 16] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

from envs.coding_env import AsyncCodingEnv, CodeAction
from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv import EnvPool, procfs
from openenv.bench import quantile
from openenv.providers import LocalProcessProvider

HUNDRED_MB = "big = list(range(2_000_000))\nindex = dict.fromkeys(range(300_000))\nlen(big)"


def percentiles(samples_s: list[float]) -> dict[str, float]:
    def at(q: float) -> float:
        return round(quantile(samples_s, q) * 1e3, 2)

    return {"p50_ms": at(0.5), "p99_ms": at(0.99), "n": len(samples_s)}


def descendants(root: int) -> list[int]:
    pids = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    parents = {pid: procfs.parent_pid(pid) for pid in pids}
    found, frontier = [], {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier}
        found += frontier
    return found


async def time_forks(env: Any, count: int, pause_s: float) -> tuple[list[float], list[float]]:
    """Fork latencies, and interleaved with them the latency of opening a plain new session on
    the same server (what a fork costs beyond a connection, under the same load)."""
    forks, sessions = [], []
    for _ in range(count):
        began = time.perf_counter()
        fork = await env.fork()
        forks.append(time.perf_counter() - began)
        await fork.close()
        await asyncio.sleep(pause_s)  # let the closed fork's teardown pass before the next
        began = time.perf_counter()
        plain = type(env)(env.endpoint)
        await plain.connect()
        sessions.append(time.perf_counter() - began)
        await plain.close()
        await asyncio.sleep(pause_s)
    return forks, sessions


async def bench_fork(forks: int, coding_forks: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    provider = LocalProcessProvider("envs.echo_env")
    async with provider:
        server = await provider.start()
        async with AsyncEchoEnv(server.endpoint) as env:
            await env.reset()
            await env.step(EchoAction(message="prefix"))
            await time_forks(env, 10, 0)  # warm-up
            samples, plain = await time_forks(env, forks, 0.02)
            results["echo"] = {**percentiles(samples), "new_session": percentiles(plain)}
    provider = LocalProcessProvider("envs.coding_env")
    async with provider:
        server = await provider.start()
        async with AsyncCodingEnv(server.endpoint) as env:
            await env.reset()
            built = await env.step(CodeAction(code=HUNDRED_MB))
            assert built.observation.exit_code == 0, built.observation.stderr
            worker_rss = max(procfs.rss_kib(pid) for pid in descendants(int(server.id))) / 1024
            await time_forks(env, 3, 0.1)  # warm-up
            samples, plain = await time_forks(env, coding_forks, 0.1)
            check = await env.fork()
            assert (await check.step(CodeAction(code="len(big)"))).observation.stdout == (
                "2000000\n"
            )
            await check.close()
            results["coding_100mb"] = {
                **percentiles(samples),
                "worker_rss_mb": round(worker_rss),
                "new_session": percentiles(plain),
            }
    return results


async def bench_fresh(
    image: str,
    starts: int,
    concurrency: int,
    spares: int,
    size: int,
    episodes: int,
    steps: int,
    rounds: int,
) -> dict[str, Any]:
    from openenv.providers.docker import LocalDockerProvider

    async def start_rate() -> float:
        """Containers started per second, ``concurrency`` at a time (create, start, wait until
        it accepts sessions), through the same provider; all stopped afterwards."""
        provider = LocalDockerProvider(image)
        limit = asyncio.Semaphore(concurrency)

        async def start_one() -> Any:
            async with limit:
                return await provider.start()

        async with provider:
            began = time.perf_counter()
            servers = await asyncio.gather(*(start_one() for _ in range(starts)))
            rate = starts / (time.perf_counter() - began)
            await asyncio.gather(*(provider.stop(server) for server in servers))
        return rate

    async def episode(env: AsyncEchoEnv) -> None:
        await env.reset()
        for i in range(steps):
            await env.step(EchoAction(message=f"step {i}"))

    pool = EnvPool(
        AsyncEchoEnv,
        LocalDockerProvider(image),
        size,
        fresh_per_episode=True,
        spares=spares,
        start_concurrency=concurrency,
    )
    results: dict[str, Any] = {"image": image, "concurrency": concurrency, "spares": spares}
    per_round: list[dict[str, float]] = []
    sustained_waits: list[float] = []
    async with pool:
        # Acquire-to-ready from spares: one episode at a time, paced so a spare is ready.
        waits = []
        for _ in range(max(8, spares * 2)):
            while pool.spares_ready < 1:  # noqa: ASYNC110 - a bench poll, no event
                await asyncio.sleep(0.01)
            began = time.perf_counter()
            async with pool.acquire() as env:
                waits.append(time.perf_counter() - began)
                await episode(env)
        results["acquire_to_ready_from_spares"] = percentiles(waits)

        # Rounds, back to back: the container start rate, then fresh episodes as fast as
        # ``size`` workers go, every one on a container no one used (stopped after it).
        for _ in range(rounds):
            rate = await start_rate()
            remaining = episodes
            began = time.perf_counter()

            async def worker() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    asked = time.perf_counter()
                    async with pool.acquire() as env:
                        sustained_waits.append(time.perf_counter() - asked)
                        await episode(env)

            await asyncio.gather(*(worker() for _ in range(size)))
            # The round began with every spare ready: it ends when they all are again, so
            # the spares started before it do not count as its throughput.
            while pool.spares_ready < spares:  # noqa: ASYNC110 - a bench poll, no event
                await asyncio.sleep(0.01)
            fresh = episodes / (time.perf_counter() - began)
            per_round.append(
                {
                    "container_starts_per_s": round(rate, 2),
                    "fresh_episodes_per_s": round(fresh, 2),
                    "ratio": round(fresh / rate, 2),
                }
            )
    results["rounds"] = per_round
    results["fresh_vs_start_rate_median"] = statistics.median(r["ratio"] for r in per_round)
    # When episodes outrun the starts an acquire waits for the next spare: the start rate
    # bounds the throughput then, and this shows the wait.
    results["acquire_to_ready_sustained"] = percentiles(sustained_waits)
    results["pool_stats"] = vars(pool.stats)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    fork = sub.add_parser("fork")
    fork.add_argument("--forks", type=int, default=200)
    fork.add_argument("--coding-forks", type=int, default=40)
    fresh = sub.add_parser("fresh")
    fresh.add_argument("--image", default="echo-env:latest")
    fresh.add_argument("--starts", type=int, default=12)
    fresh.add_argument("--concurrency", type=int, default=4)
    fresh.add_argument("--spares", type=int, default=4)
    fresh.add_argument("--size", type=int, default=4)
    fresh.add_argument("--episodes", type=int, default=16)
    fresh.add_argument("--rounds", type=int, default=3)
    fresh.add_argument("--steps", type=int, default=10)
    for command in (fork, fresh):
        command.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.what == "fork":
        results = asyncio.run(bench_fork(args.forks, args.coding_forks))
    else:
        results = asyncio.run(
            bench_fresh(
                args.image,
                args.starts,
                args.concurrency,
                args.spares,
                args.size,
                args.episodes,
                args.steps,
                args.rounds,
            )
        )
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
