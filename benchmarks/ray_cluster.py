"""RayProvider on a 2-node Ray cluster on this machine (loopback only), three figures:

1. the cluster's own cost: start-up time and memory (PSS of the GCS, raylets, agents, workers);
2. ``openenv bench --provider ray`` against the same bench on ``LocalProcessProvider``, in
   back-to-back rounds (alternating order): Ray / local steps/s per round, and start-up;
3. a node's death during a pool run: episodes lost, wrong replies, where the replacement
   servers went, and what is left on any node afterwards.

    .venv/bin/python benchmarks/ray_cluster.py [--sessions 64] [--duration 2] [--rounds 5]
        [--episodes 500] [--pool 16]      # writes benchmarks/results/ray.json

Needs the ray extra (``pip install 'openenv[ray]'``) and psutil.
"""

from __future__ import annotations

import os

# Before ray is imported: otherwise Ray binds the machine's non-loopback address too.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
# Notice a dead node in ~1.5 s (3 missed checks 0.5 s apart) instead of ~15 s.
os.environ.update(
    RAY_health_check_initial_delay_ms="1000",
    RAY_health_check_period_ms="500",
    RAY_health_check_timeout_ms="500",
    RAY_health_check_failure_threshold="3",
)

import argparse
import asyncio
import json
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import ray
from ray.cluster_utils import Cluster

from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv import EnvPool
from openenv.bench.runner import BenchOptions, run_bench
from openenv.providers.ray import RayProvider

NODE = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}


def cluster_pss_mib() -> float:
    """PSS of every process this script started (the cluster), this script excluded."""
    total = 0
    for process in psutil.Process().children(recursive=True):
        try:
            total += process.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total / 2**20


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


async def bench_rounds(args: argparse.Namespace, address: str) -> dict[str, Any]:
    common = {"sessions": args.sessions, "duration": args.duration, "servers": 2}
    options = {
        "ray": BenchOptions(provider="ray", ray_address=address, progress=False, **common),
        "local": BenchOptions(provider="process", progress=False, **common),
        "local_tcp": BenchOptions(provider="process", transport="tcp", progress=False, **common),
    }
    rounds: list[dict[str, Any]] = []
    for index in range(args.rounds):
        order = list(options) if index % 2 == 0 else list(options)[::-1]
        row: dict[str, Any] = {}
        for name in order:
            result = await run_bench(options[name])
            row[name] = {
                "steps_per_s": round(result.ours.steps_per_s, 1),
                "p50_ms": round(result.ours.p50_ms, 3),
                "p99_ms": round(result.ours.p99_ms, 3),
                "startup_s": round(result.startup_s, 3),
                "servers": result.servers,
                "errors": result.errors,
            }
        ray_rate = row["ray"]["steps_per_s"]
        row["ratio"] = round(ray_rate / row["local"]["steps_per_s"], 3)
        row["ratio_tcp"] = round(ray_rate / row["local_tcp"]["steps_per_s"], 3)
        rounds.append(row)
        print(f"round {index}: {row}", flush=True)
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
        name: statistics.median(row[name]["startup_s"] for row in rounds) for name in options
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
    async with EnvPool(AsyncEchoEnv, provider, args.pool) as pool:
        before = sorted({provider.node_of(s)[:12] for s in provider.running()})
        run = asyncio.ensure_future(pool.run_episodes(episode, args.episodes, retries=2))
        await kill_now.wait()
        removed_at = time.perf_counter()
        cluster.remove_node(victim, allow_graceful=False)
        outcomes = await run
        finished = time.perf_counter()
        nodes_after = sorted({provider.node_of(s)[:12] for s in provider.running()})
        stats = pool.stats
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
        cost = {"nodes": 2, "startup_s": round(startup, 2), "pss_mib": round(cluster_pss_mib())}
        print(f"cluster: {cost}", flush=True)
        bench = await bench_rounds(args, cluster.address)
        death = await node_death(args, cluster)
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
    parser.add_argument("--episodes", type=int, default=500)
    parser.add_argument("--pool", type=int, default=16)
    parser.add_argument("--out", default="benchmarks/results/ray.json")
    arguments = parser.parse_args()
    figures = asyncio.run(main(arguments))
    Path(arguments.out).write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
