"""RayProvider on a 2-node Ray cluster on this machine (loopback only), three figures:

1. the cluster's own cost: start-up time and memory (PSS of the GCS, raylets, agents, workers);
2. the closed loop of ``openenv bench`` on a pool from ``RayProvider`` (the pool
   ``openenv bench --provider ray`` makes) against the same on ``LocalProcessProvider`` (unix
   sockets, the default, and tcp), in back-to-back rounds: Ray / local steps/s, and start-up;
3. a node's death during a pool run: episodes lost, wrong replies, where the replacement
   servers went, and what is left on any node afterwards.

    .venv/bin/python benchmarks/ray_cluster.py [--sessions 64] [--duration 2] [--rounds 5]
        [--episodes 500] [--pool 16]      # writes benchmarks/results/ray.json
    .venv/bin/python benchmarks/ray_cluster.py --health-check default --rounds 0 \
        --episodes 200 --out benchmarks/results/ray-default-health-check.json

Needs the ray extra (``pip install 'openenv-rl[ray]'``) and psutil.
"""

# ruff: noqa: E402 - ray may only be imported once its environment is set

from __future__ import annotations

import os
import sys

# Before ray is imported: otherwise Ray binds the machine's non-loopback address too.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
FAST_HEALTH_CHECK = "default" not in sys.argv  # read before argparse: ray reads it at import
if FAST_HEALTH_CHECK:
    # Notice a dead node in ~1.5 s (3 missed checks 0.5 s apart) instead of Ray's 5 x 3 s.
    os.environ.update(
        RAY_health_check_initial_delay_ms="1000",
        RAY_health_check_period_ms="500",
        RAY_health_check_timeout_ms="500",
        RAY_health_check_failure_threshold="3",
    )

import argparse
import asyncio
import contextlib
import functools
import json
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import ray
from ray.cluster_utils import Cluster

from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv import EnvPool
from openenv.bench.runner import BenchOptions, _closed_loops
from openenv.providers import LocalProcessProvider, Provider
from openenv.providers.ray import RayProvider

NODE = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}


def cluster_memory_mib() -> dict[str, int]:
    """PSS (shared pages split among their users) and RSS summed over every process this
    script started (the cluster's), this script excluded."""
    pss = rss = 0
    for process in psutil.Process().children(recursive=True):
        try:
            info = process.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        pss, rss = pss + info.pss, rss + info.rss
    return {"pss_mib": round(pss / 2**20), "rss_mib": round(rss / 2**20)}


def seen_dead(node_id: str) -> float:
    """When ``ray.nodes()`` first reports ``node_id`` dead (polled every 50 ms, up to 60 s)."""
    for _ in range(1200):
        if not any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes()):
            break
        time.sleep(0.05)
    return time.perf_counter()


def marked(mark: str) -> list[int]:
    """Live env servers started with OPENENV_TEST_MARK=mark, wherever they run."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("OPENENV_TEST_MARK") == mark:
                found.append(process.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def providers(address: str) -> dict[str, Callable[[], Provider]]:
    """The three set-ups compared: as ``openenv bench --provider ray|process`` makes them."""
    env = {"OPENENV_MAX_SESSIONS": "256"}
    return {
        "ray": lambda: RayProvider("envs.echo_env", address=address, env=env),
        "local": lambda: LocalProcessProvider("envs.echo_env", env=env),
        "local_tcp": lambda: LocalProcessProvider("envs.echo_env", transport="tcp", env=env),
    }


async def bench_rounds(args: argparse.Namespace, address: str) -> dict[str, Any]:
    """Steps/s of 64 sessions on 2 servers: Ray (one server per node), local processes over
    unix sockets (the bench's default) and over tcp. The three pools stay open and are
    measured in turn, order alternating, ``rounds`` times: the machine is shared and its speed
    drifts within seconds, so only a ratio taken within one round means anything. Start-up is
    measured apart: fresh pools, one after another, ``startups`` times."""
    makers = providers(address)
    options = BenchOptions(duration=args.duration, progress=False)
    per_server = -(-args.sessions // 2)
    action = EchoAction(message="x" * 100)
    rounds: list[dict[str, Any]] = []
    async with contextlib.AsyncExitStack() as stack:
        calls = {}
        for name, make in makers.items():
            pool = EnvPool(AsyncEchoEnv, make(), args.sessions, sessions_per_server=per_server)
            await stack.enter_async_context(pool)
            await pool.reset()
            calls[name] = [functools.partial(env.step, action) for env in pool.envs]
        for index in range(args.rounds):
            row: dict[str, Any] = {}
            for name in list(makers) if index % 2 == 0 else list(makers)[::-1]:
                # The very loop `openenv bench` measures with.
                figures = await _closed_loops(calls[name], options, name)
                row[name] = {
                    "steps_per_s": round(figures.steps_per_s, 1),
                    "p50_ms": round(figures.p50_ms, 3),
                    "p99_ms": round(figures.p99_ms, 3),
                }
            ray_rate = row["ray"]["steps_per_s"]
            row["ratio"] = round(ray_rate / row["local"]["steps_per_s"], 3)
            row["ratio_tcp"] = round(ray_rate / row["local_tcp"]["steps_per_s"], 3)
            rounds.append(row)
            print(f"round {index}: {row}", flush=True)
    startups: dict[str, list[float]] = {name: [] for name in makers}
    for _ in range(args.startups):
        for name, make in makers.items():
            async with EnvPool(
                AsyncEchoEnv, make(), args.sessions, sessions_per_server=per_server
            ) as pool:
                startups[name].append(pool.stats.startup_s)
    summary: dict[str, Any] = {
        "sessions": args.sessions,
        "servers": 2,
        "seconds_per_measurement": args.duration,
        "rounds": rounds,
    }
    for key, label in (("ratio", "local"), ("ratio_tcp", "local_tcp")):
        ratios = [row[key] for row in rounds]
        summary[f"ray_over_{label}_median"] = statistics.median(ratios)
        summary[f"ray_over_{label}_range"] = [min(ratios), max(ratios)]
    summary["startup_s_median"] = {
        name: round(statistics.median(values), 3) for name, values in startups.items()
    }
    summary["startup_s_all"] = {
        name: [round(value, 3) for value in values] for name, values in startups.items()
    }
    return summary


async def node_death(args: argparse.Namespace, cluster: Any) -> dict[str, Any]:
    mark = uuid.uuid4().hex
    provider = RayProvider("envs.echo_env", env={"OPENENV_TEST_MARK": mark})
    victim = cluster.worker_nodes and next(iter(cluster.worker_nodes))
    head = cluster.head_node.node_id
    done = 0
    kill_now = asyncio.Event()
    removed_at = 0.0

    async def episode(env: AsyncEchoEnv) -> int:
        nonlocal done
        await env.reset()
        wrong = 0
        for step in range(10):
            message = f"{id(env)}-{step}-{uuid.uuid4().hex[:8]}"
            result = await env.step(EchoAction(message=message))
            wrong += result.observation.echoed_message != message
        done += 1
        if done == args.episodes // 5:
            kill_now.set()
        return wrong

    began = time.perf_counter()
    pool = EnvPool(AsyncEchoEnv, provider, args.pool, sessions_per_server=2)
    async with pool:
        before = sorted({provider.node_of(s)[:12] for s in provider.running()})
        run = asyncio.ensure_future(pool.run_episodes(episode, args.episodes, retries=2))
        await kill_now.wait()
        removed_at = time.perf_counter()
        cluster.remove_node(victim, allow_graceful=False)
        noticed = asyncio.ensure_future(asyncio.to_thread(seen_dead, victim.node_id))
        outcomes = await run
        finished = time.perf_counter()
        nodes_after = sorted({provider.node_of(s)[:12] for s in provider.running()})
        stats = pool.stats
        dead_noticed_s = await noticed - removed_at
    for _ in range(150):  # a server exits within ~3 s of its host; allow 15 s
        if not marked(mark):
            break
        await asyncio.sleep(0.1)
    prefix = f"openenv-host:{provider.id}:"
    actors = [
        a for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix)
    ]
    return {
        "pool_sessions": args.pool,
        "sessions_per_server": 2,
        "episodes": args.episodes,
        "steps_per_episode": 10,
        "completed": sum(o.ok for o in outcomes),
        "lost": sum(not o.ok for o in outcomes),
        "errors": [repr(o.error) for o in outcomes if not o.ok],
        "retried": sum(o.attempts > 1 for o in outcomes),
        "wrong_replies": sum(o.result or 0 for o in outcomes if o.ok),
        "servers_replaced": stats.servers_replaced,
        "envs_replaced": stats.envs_replaced,
        "nodes_before": before,
        "nodes_after": nodes_after,
        "head": head[:12],
        "seconds_total": round(finished - began, 2),
        "seconds_after_node_removed": round(finished - removed_at, 2),
        "ray_marked_node_dead_after_s": round(dead_noticed_s, 2),
        "health_check": "fast" if FAST_HEALTH_CHECK else "default",
        "servers_left": len(marked(mark)),
        "host_actors_left": len(actors),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    began = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={**NODE, "include_dashboard": False})
    try:
        cluster.add_node(**NODE)
        cluster.wait_for_nodes()
        startup = time.perf_counter() - began
        ray.init(address=cluster.address, log_to_driver=False)
        await asyncio.sleep(2)  # let the workers Ray prestarts settle before weighing them
        cost = {"nodes": 2, "startup_s": round(startup, 2), **cluster_memory_mib()}
        print(f"cluster: {cost}", flush=True)
        bench = await bench_rounds(args, cluster.address) if args.rounds else None
        death = await node_death(args, cluster) if args.episodes else None
        print(f"node death: {death}", flush=True)
        return {"cluster": cost, "bench": bench, "node_death": death}
    finally:
        ray.shutdown()
        cluster.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=64)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--startups", type=int, default=5, help="fresh pools timed, each kind")
    parser.add_argument("--episodes", type=int, default=500, help="0: no node-death run")
    parser.add_argument("--pool", type=int, default=16)
    parser.add_argument("--out", default="benchmarks/results/ray.json")
    parser.add_argument(
        "--health-check",
        choices=["fast", "default"],
        default="fast",
        help="fast: RAY_health_check_* set to notice a dead node in ~1.5 s; default: Ray's",
    )
    arguments = parser.parse_args()
    figures = asyncio.run(main(arguments))
    Path(arguments.out).write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
