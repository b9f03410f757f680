"""Fork latency and fresh-server-per-episode throughput.

``fork``: p50/p99 of ``await env.fork()`` (the ``fork`` request, the copy, a new connection
with the ticket and its greeting: the fork is ready to step when it returns), with the server
in a process of its own: the echo env, and the coding env holding ~100 MB of Python objects
(the worker's RSS is reported). Forks are closed outside the timed part, with a pause after
each close; interleaved with the forks, opening a plain new session on the same server is
timed too (``new_session``): the floor a fork cannot beat, under the same load.

``fresh``: Docker containers, back to back in one run:

1. the container start rate: ``--starts`` containers started ``--concurrency`` at a time
   through the provider (create, start, wait until it accepts sessions), then stopped; measured
   before and after steps 2-3 (the machine's load drifts), the mean is the baseline;
2. acquire-to-ready from spares: episodes paced slower than starts, so a spare is always
   there; the time from ``pool.acquire()`` until the env is in hand (session open);
3. sustained fresh episodes/s: ``--episodes`` episodes (reset + ``--steps`` steps each) as
   fast as ``--size`` workers go, every one on a container no one used, each stopped after.

    .venv/bin/python benchmarks/fork_fresh.py fork [--forks 200] [--coding-forks 40]
    .venv/bin/python benchmarks/fork_fresh.py fresh [--image echo-env:latest] [--starts 24]
        [--concurrency 4] [--spares 4] [--size 4] [--episodes 48] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from envs.coding_env import AsyncCodingEnv, CodeAction
from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv import EnvPool, procfs
from openenv.providers import LocalProcessProvider

HUNDRED_MB = "big = list(range(2_000_000))\nindex = dict.fromkeys(range(300_000))\nlen(big)"


def percentiles(samples_s: list[float]) -> dict[str, float]:
    ordered = sorted(samples_s)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3, 2)

    return {"p50_ms": at(0.5), "p99_ms": at(0.99), "n": len(ordered)}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


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
            worker_rss = max(rss_mb(pid) for pid in descendants(int(server.id)))
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
    image: str, starts: int, concurrency: int, spares: int, size: int, episodes: int, steps: int
) -> dict[str, Any]:
    from openenv.providers.docker import LocalDockerProvider

    results: dict[str, Any] = {"image": image, "concurrency": concurrency}

    # 1. How fast this machine's Docker starts containers (through the same provider), measured
    # before and after the fresh run: the machine's load drifts, the mean is the baseline.
    async def start_rate() -> tuple[float, float]:
        provider = LocalDockerProvider(image)
        limit = asyncio.Semaphore(concurrency)

        async def start_one() -> Any:
            async with limit:
                return await provider.start()

        async with provider:
            await provider.stop(await provider.start())  # warm-up (image cache, daemon)
            began = time.perf_counter()
            servers = await asyncio.gather(*(start_one() for _ in range(starts)))
            start_s = time.perf_counter() - began
            began = time.perf_counter()
            await asyncio.gather(*(provider.stop(server) for server in servers))
            stop_s = time.perf_counter() - began
        return starts / start_s, starts / stop_s

    before, stops_before = await start_rate()

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
    async with pool:
        # 2. Acquire-to-ready from spares: one episode at a time, paced below the start rate.
        waits = []
        pace_s = 1.5 / before
        for _ in range(max(8, spares * 2)):
            while pool.spares_ready < 1:  # noqa: ASYNC110 - a bench poll, no event
                await asyncio.sleep(0.01)
            began = time.perf_counter()
            async with pool.acquire() as env:
                waits.append(time.perf_counter() - began)
                await episode(env)
            await asyncio.sleep(pace_s)
        results["acquire_to_ready_from_spares"] = percentiles(waits)

        # 3. Sustained: as many episodes as the pool can, each on an unused container.
        remaining = episodes
        sustained_waits = []
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
        elapsed = time.perf_counter() - began
    after, stops_after = await start_rate()
    results["container_starts_per_s"] = {
        "before": round(before, 2),
        "after": round(after, 2),
        "mean": round((before + after) / 2, 2),
    }
    results["container_stops_per_s"] = round((stops_before + stops_after) / 2, 2)
    # When episodes outrun the starts, an acquire waits for the next spare: the start rate
    # bounds the throughput then, and this shows the wait.
    results["acquire_to_ready_sustained"] = percentiles(sustained_waits)
    results["fresh_episodes"] = episodes
    results["fresh_episodes_per_s"] = round(episodes / elapsed, 2)
    results["fresh_vs_start_rate"] = round(
        results["fresh_episodes_per_s"] / results["container_starts_per_s"]["mean"], 2
    )
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
    fresh.add_argument("--starts", type=int, default=24)
    fresh.add_argument("--concurrency", type=int, default=4)
    fresh.add_argument("--spares", type=int, default=4)
    fresh.add_argument("--size", type=int, default=4)
    fresh.add_argument("--episodes", type=int, default=48)
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
            )
        )
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
