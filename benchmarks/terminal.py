"""The terminal env against ``docker exec``, in one run, in the same container.

1. Round trip of ``Exec("true")`` and ``Exec("echo hi")`` (client to the container's server,
   through the session's persistent bash, and back) on 1 session and on N concurrent sessions,
   against ``docker exec <container> true`` / ``echo hi`` (the docker CLI, as sandboxes that
   run each command through ``docker exec`` pay it), 1 at a time and N at once. Interleaved
   over several rounds; p50 and p99 over every call, and the range of the rounds' p50s.
2. Start-up: from ``AsyncTerminalEnv.from_docker_image`` to the reply of the first
   ``Exec("true")`` (a reset in between), over several starts.
3. Memory of an idle container (one reset session, its bash waiting): the container's cgroup
   figures from the Docker API (RSS, and usage less inactive file pages as ``docker stats``
   shows it).

    .venv/bin/python benchmarks/terminal.py [--rounds 3] [--sessions 64] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import time
from typing import Any

import aiodocker

from envs.terminal_env import AsyncTerminalEnv, Exec
from openenv.bench import quantile
from openenv.providers.docker import LocalDockerProvider

COMMANDS = {"true": ["true"], "echo hi": ["echo", "hi"]}


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


async def ours(envs: list[AsyncTerminalEnv], command: str, calls: int) -> list[float]:
    expected = "hi\n" if command == "echo hi" else ""

    async def session(env: AsyncTerminalEnv) -> list[float]:
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            observation = (await env.step(Exec(command))).observation
            times.append(time.perf_counter() - started)
            assert observation.exit_code == 0 and observation.stdout == expected, observation
        return times

    return [t for times in await asyncio.gather(*map(session, envs)) for t in times]


async def docker_exec(container: str, argv: list[str], concurrency: int, calls: int) -> list[float]:
    async def one() -> list[float]:
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            process = await asyncio.create_subprocess_exec(
                "docker", "exec", container, *argv, stdout=subprocess.PIPE
            )
            await process.communicate()
            times.append(time.perf_counter() - started)
            assert process.returncode == 0, process.returncode
        return times

    runs = await asyncio.gather(*(one() for _ in range(concurrency)))
    return [t for times in runs for t in times]


def summary(samples: list[float], round_p50s: list[float]) -> dict[str, Any]:
    return {
        "calls": len(samples),
        "p50_ms": round(statistics.median(samples) * 1000, 3),
        "p99_ms": round(quantile(samples, 0.99) * 1000, 3),
        "round_p50_ms": [round(p * 1000, 3) for p in round_p50s],
    }


async def round_trips(args: argparse.Namespace) -> dict[str, Any]:
    provider = LocalDockerProvider(args.image)
    results: dict[str, Any] = {}
    try:
        server = await provider.start()
        envs = [AsyncTerminalEnv(server.endpoint) for _ in range(args.sessions)]
        try:
            await asyncio.gather(*(env.reset() for env in envs))
            samples: dict[str, list[float]] = {}
            medians: dict[str, list[float]] = {}

            def keep(key: str, times: list[float]) -> None:
                samples.setdefault(key, []).extend(times)
                medians.setdefault(key, []).append(statistics.median(times))

            for _ in range(args.rounds):
                for name, argv in COMMANDS.items():
                    keep(f"{name} | ours | 1", await ours(envs[:1], name, args.calls))
                    keep(
                        f"{name} | docker exec | 1",
                        await docker_exec(server.id, argv, 1, args.docker_calls),
                    )
                    keep(
                        f"{name} | ours | {args.sessions}",
                        await ours(envs, name, args.concurrent_calls),
                    )
                    keep(
                        f"{name} | docker exec | {args.sessions}",
                        await docker_exec(server.id, argv, args.sessions, 1),
                    )
            for key, times in samples.items():
                command, who, sessions = key.split(" | ")
                results.setdefault(command, {}).setdefault(f"{sessions} session(s)", {})[who] = (
                    summary(times, medians[key])
                )
            for command in results.values():
                for figures in command.values():
                    figures["docker_exec_p50_over_ours_p50"] = round(
                        figures["docker exec"]["p50_ms"] / figures["ours"]["p50_ms"], 1
                    )
        finally:
            await asyncio.gather(*(env.close() for env in envs))
    finally:
        await provider.close()
    return results


async def start_up(image: str, starts: int) -> dict[str, Any]:
    times = []
    for _ in range(starts):
        started = time.perf_counter()
        async with await AsyncTerminalEnv.from_docker_image(image) as env:
            await env.reset()
            await env.step(Exec("true"))
            times.append(time.perf_counter() - started)
    return {
        "starts": starts,
        "p50_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
    }


async def idle_memory(image: str, containers: int) -> dict[str, Any]:
    provider = LocalDockerProvider(image)
    envs = []
    try:
        servers = await asyncio.gather(*(provider.start() for _ in range(containers)))
        for server in servers:
            env = AsyncTerminalEnv(server.endpoint)
            envs.append(env)
            await env.reset()
            await env.step(Exec("true"))
        await asyncio.sleep(1)  # let the start-up settle before reading the cgroups
        rss, used = [], []
        async with aiodocker.Docker() as docker:
            for server in servers:
                (stats,) = await docker.containers.container(server.id).stats(stream=False)
                memory = stats["memory_stats"]
                inner = memory.get("stats", {})
                rss.append(inner.get("total_rss", inner.get("rss", 0)))
                used.append(memory["usage"] - inner.get("total_inactive_file", 0))
        mib = 1 << 20
        return {
            "containers": containers,
            "rss_mib_median": round(statistics.median(rss) / mib, 1),
            "usage_mib_median": round(statistics.median(used) / mib, 1),
            "rss_mib": [round(r / mib, 1) for r in rss],
        }
    finally:
        await asyncio.gather(*(env.close() for env in envs))
        await provider.close()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "command": "benchmarks/terminal.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "json"),
        "load_before": load(),
        "cpus": os.cpu_count(),
    }
    result["round_trip"] = await round_trips(args)
    result["start_up_to_first_command"] = await start_up(args.image, args.starts)
    result["idle_container_memory"] = await idle_memory(args.image, args.idle_containers)
    result["load_after"] = load()
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--image", default="terminal-env:latest")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=64)
    parser.add_argument("--calls", type=int, default=300, help="per round, 1 session")
    parser.add_argument("--concurrent-calls", type=int, default=20, help="per session, N")
    parser.add_argument("--docker-calls", type=int, default=20, help="per round, 1 at a time")
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--idle-containers", type=int, default=4)
    parser.add_argument("--json", help="also write the figures to this file")
    arguments = parser.parse_args()
    figures = asyncio.run(main(arguments))
    print(json.dumps(figures, indent=2))
    if arguments.json:
        with open(arguments.json, "w") as out:
            json.dump(figures, out, indent=2)
            out.write("\n")
