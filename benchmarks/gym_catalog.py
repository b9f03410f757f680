"""Gymnasium envs served by openenv (Pong, CartPole) at 1, 64 and 256 sessions: env steps/s and
bytes per step of three ways to step N envs from one process, measured in one run:

- ``ours``: one EnvPool of N sessions over local ``openenv serve gym:<id>`` servers (our
  msgpack frames, arrays as typed binary), observations restored to arrays and stacked;
- ``json-lists``: the same pool and servers and client code, the sessions speaking upstream
  OpenEnv's JSON dialect (text frames; arrays sent as nested lists, turned back into arrays);
- ``async-vector``: Gymnasium's ``AsyncVectorEnv`` (one process per env, observations in shared
  memory): the in-process anchor, nothing crosses a socket.

Every sub-env gets random actions; ended episodes are reset the next step (Gymnasium's
next-step autoreset). In each round the three are measured back to back, in rotating order;
figures are medians (and ranges) over rounds, and the ratios are medians of per-round ratios.
The machine's load average is recorded before and after: it is shared, and the figures move
with it.

    .venv/bin/python benchmarks/gym_catalog.py [--envs ALE/Pong-v5 CartPole-v1]
        [--sizes 1 64 256] [--seconds 2] [--rounds 3] [--servers 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import psutil

from openenv.client.portal import run_sync
from openenv.gym.remote import AsyncGymClient, GymWire, gym_provider
from openenv.gym_wire import GymAction, restore
from openenv.launch import EnvPool
from openenv.protocol import Codec, Result, request_type
from openenv.server.gym_env import gym_environment
from openenv.server.upstream import UpstreamCodec

ROOT = Path(__file__).resolve().parent.parent


class JsonListsClient(AsyncGymClient):
    """The same client, speaking upstream OpenEnv's JSON dialect."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, protocol="upstream", **kwargs)


class PoolStepper:
    """N sessions of one env in one EnvPool, stepped as a vector env steps."""

    def __init__(
        self,
        client_cls: type[AsyncGymClient],
        env_id: str,
        n: int,
        servers: int,
        wire: GymWire | None = None,
    ) -> None:
        per_server = math.ceil(n / max(1, min(servers, n)))
        self.pool: EnvPool[Any] = EnvPool(
            client_cls,
            gym_provider(env_id),
            n,
            sessions_per_server=per_server,
            show_progress=False,
            # Each server makes and resets its sessions' envs one after another: 128 Atari
            # envs on a loaded machine take more than a minute.
            timeout=600,
        )
        run_sync(self.pool.start())
        hello = self.pool.envs[0].hello
        assert hello is not None
        # Upstream's dialect greets with nothing: its sessions take the spaces ours announced.
        self.wire = wire or GymWire(hello, env_id)
        self.n = n
        self.rng = np.random.default_rng(0)
        self.ended = np.zeros(n, dtype=np.bool_)
        run_sync(self.pool.reset(seed=0))

    def pids(self) -> list[int]:
        return [int(server.id) for server in self.pool.servers]

    def run(self, seconds: float) -> float:
        return run_sync(self._run(seconds))

    async def _run(self, seconds: float) -> float:
        space, n = self.wire.action_space, self.n
        steps, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            actions = [GymAction(action=int(a)) for a in self.rng.integers(0, space.n, n)]
            results = await self.pool.step(actions, reset=self.ended.tolist())
            observations = [
                restore(self.wire.observation_space, r.observation.observation) for r in results
            ]
            np.stack(observations)  # what a vector env hands its caller
            self.ended = np.array([r.done for r in results], dtype=np.bool_)
            steps += 1
        return steps * n / (time.perf_counter() - started)

    def close(self) -> None:
        run_sync(self.pool.close())


class AsyncVectorStepper:
    def __init__(self, env_id: str, n: int) -> None:
        self.envs = gymnasium.make_vec(
            env_id, n, vectorization_mode="async", vector_kwargs={"shared_memory": True}
        )
        self.envs.reset(seed=0)
        self.n = n

    def pids(self) -> list[int]:
        return [process.pid for process in self.envs.processes]

    def run(self, seconds: float) -> float:
        steps, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            self.envs.step(self.envs.action_space.sample())
            steps += 1
        return steps * self.n / (time.perf_counter() - started)

    def close(self) -> None:
        self.envs.close()


def frame_bytes(env_id: str) -> dict[str, int]:
    """Bytes of one step's reply frame, the way each side encodes a real observation."""
    env_cls = gym_environment(env_id)
    env = env_cls()
    env.reset(seed=0)
    observation = env.step(env_cls.action_type(action=0))  # type: ignore[call-arg]
    env.close()
    ours = Codec(request_type(env_cls.action_type)).encode(Result(id=1, observation=observation))
    upstream = UpstreamCodec(env_cls.action_type).observation(observation)
    return {"ours": len(ours), "json-lists": len(upstream.encode())}


def timed(stepper: Any, seconds: float) -> tuple[float, float]:
    """Env steps/s, and CPU microseconds per env step: this process (the client, or the
    vector env's parent) plus the stepper's server or worker processes."""
    workers = [psutil.Process(pid) for pid in stepper.pids()]

    def cpu() -> float:
        total = time.process_time()
        for worker in workers:
            times = worker.cpu_times()
            total += times.user + times.system
        return total

    before = cpu()
    started = time.perf_counter()
    rate = stepper.run(seconds)
    steps = rate * (time.perf_counter() - started)
    return rate, (cpu() - before) / steps * 1e6


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
    }


def measure(env_id: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    ours = PoolStepper(AsyncGymClient, env_id, n, args.servers)
    steppers: dict[str, Any] = {
        "ours": ours,
        "json-lists": PoolStepper(JsonListsClient, env_id, n, args.servers, ours.wire),
        "async-vector": AsyncVectorStepper(env_id, n),
    }
    rates: dict[str, list[float]] = {name: [] for name in steppers}
    cpu: dict[str, list[float]] = {name: [] for name in steppers}
    try:
        names = list(steppers)
        for name in names:  # warm up: first frames, caches, connections
            steppers[name].run(min(0.5, args.seconds))
        for index in range(args.rounds):
            order = names[index % 3 :] + names[: index % 3]
            for name in order:
                rate, cpu_us = timed(steppers[name], args.seconds)
                rates[name].append(rate)
                cpu[name].append(cpu_us)
    finally:
        for stepper in steppers.values():
            stepper.close()
    ratios = {
        "ours_vs_json_lists": [
            o / j for o, j in zip(rates["ours"], rates["json-lists"], strict=True)
        ],
        "ours_vs_async_vector": [
            o / a for o, a in zip(rates["ours"], rates["async-vector"], strict=True)
        ],
    }
    return {
        "env": env_id,
        "sessions": n,
        "env_steps_per_s": {name: summary(values) for name, values in rates.items()},
        "cpu_us_per_env_step": {name: summary(values) for name, values in cpu.items()},
        "ratios": {
            name: {
                "median": round(statistics.median(values), 2),
                "min": round(min(values), 2),
                "max": round(max(values), 2),
            }
            for name, values in ratios.items()
        },
        "rounds": {name: [round(v, 1) for v in values] for name, values in rates.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["ALE/Pong-v5", "CartPole-v1"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1, 64, 256])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--servers", type=int, default=2, help="server processes (ours, json)")
    parser.add_argument("--json", default=str(ROOT / "benchmarks/results/gym_catalog.json"))
    args = parser.parse_args()

    # Servers take 64 pending handshakes by default; start-up is not what is measured.
    os.environ.setdefault("OPENENV_MAX_PENDING", "1024")
    import ale_py

    gymnasium.register_envs(ale_py)
    report: dict[str, Any] = {
        "command": "python benchmarks/gym_catalog.py "
        + " ".join(
            [
                f"--envs {' '.join(args.envs)}",
                f"--sizes {' '.join(map(str, args.sizes))}",
                f"--seconds {args.seconds}",
                f"--rounds {args.rounds}",
                f"--servers {args.servers}",
            ]
        ),
        "cpus": os.cpu_count(),
        "load_before": load(),
        "frame_bytes_per_step": {env_id: frame_bytes(env_id) for env_id in args.envs},
        "results": [],
    }
    for env_id in args.envs:
        for n in args.sizes:
            started = time.perf_counter()
            result = measure(env_id, n, args)
            result["load_after"] = load()
            result["wall_s"] = round(time.perf_counter() - started, 1)
            report["results"].append(result)
            rates = result["env_steps_per_s"]
            print(
                f"{env_id} x{n}: ours {rates['ours']['median']:.0f}, json-lists "
                f"{rates['json-lists']['median']:.0f}, async-vector "
                f"{rates['async-vector']['median']:.0f} env steps/s; ours/json "
                f"{result['ratios']['ours_vs_json_lists']['median']}x, ours/async "
                f"{result['ratios']['ours_vs_async_vector']['median']}x; CPU us/step ours "
                f"{result['cpu_us_per_env_step']['ours']['median']:.0f}, async "
                f"{result['cpu_us_per_env_step']['async-vector']['median']:.0f} "
                f"(load {result['load_after']})",
                flush=True,
            )
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    report["load_after"] = load()
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
