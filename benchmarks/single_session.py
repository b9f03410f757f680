"""Single-session echo throughput: AsyncEnvClient and EnvClient vs the Sans-I/O ceiling.

All three run in this one process against servers in separate processes on 127.0.0.1, with the
same frame sizes, one after another in each of several rounds; a ratio is the median of the
per-round ratios, never taken from absolute times across runs (the machine is shared and noisy,
and only measurements taken back to back see the same machine). The ceiling is websockets'
Sans-I/O protocol on raw asyncio Protocols at both ends (``openenv.bench.references``); the
ceiling and the async client run on uvloop; the sync client blocks on its socket (no loop).
``--hog N`` runs N busy-looping processes meanwhile: a loaded machine.

    .venv/bin/python benchmarks/single_session.py [--seconds 2] [--rounds 5] [--message-size 100]
        [--hog 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

from envs.echo_env import AsyncEchoEnv, EchoAction, EchoEnv
from envs.echo_env.models import EchoObservation
from openenv.bench import run_fast
from openenv.bench.references import _SansIOClient
from openenv.protocol import Codec, Result, Step, request_type


async def rate(call: Callable[[], Awaitable[object]], seconds: float) -> tuple[float, float]:
    """Steps/s, and this process's CPU µs per step."""
    for _ in range(200):
        await call()
    count, started, cpu = 0, time.perf_counter(), time.process_time()
    deadline = started + seconds
    while True:
        for _ in range(100):
            await call()
        count += 100
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - started), (time.process_time() - cpu) / count * 1e6


def sync_rate(call: Callable[[], object], seconds: float) -> tuple[float, float]:
    """Steps/s, and this process's CPU µs per step."""
    for _ in range(200):
        call()
    count, started, cpu = 0, time.perf_counter(), time.process_time()
    deadline = started + seconds
    while True:
        for _ in range(100):
            call()
        count += 100
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - started), (time.process_time() - cpu) / count * 1e6


def wire_sizes(message_size: int) -> tuple[bytes, int]:
    """The step request frame, and the size of the reply frame, our client exchanges."""
    action = EchoAction(message="x" * message_size)
    request = Codec(request_type(EchoAction)).encode(Step(id=123456, action=action))
    observation = EchoObservation(
        echoed_message=action.message, message_length=message_size, reward=message_size / 10
    )
    reply = Codec(request_type(EchoAction)).encode(Result(id=123456, observation=observation))
    return request, len(reply)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--message-size", type=int, default=100)
    parser.add_argument("--hog", type=int, default=0, help="busy-looping processes meanwhile")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.hog)]

    request, reply_size = wire_sizes(args.message_size)
    raw_server = subprocess.Popen(
        [sys.executable, "-m", "openenv.bench.sansio_server", str(reply_size)],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
        text=True,
    )
    assert raw_server.stdout is not None
    raw_url = raw_server.stdout.readline().strip()
    sync_env = EchoEnv.from_process(transport="tcp")
    action = EchoAction(message="x" * args.message_size)
    figures: dict[str, list[float]] = {"raw": [], "async": [], "sync": []}
    cpu: dict[str, list[float]] = {"raw": [], "async": [], "sync": []}

    def record(name: str, measured: tuple[float, float]) -> None:
        figures[name].append(measured[0])
        cpu[name].append(measured[1])

    try:
        sync_env.reset()

        async def measure_async_side() -> None:
            raw = await _SansIOClient.open(raw_url)
            record("raw", await rate(lambda: raw.call(request), args.seconds))
            assert raw.transport is not None
            raw.transport.close()
            async with AsyncEchoEnv(sync_env.endpoint) as env:
                await env.reset()
                record("async", await rate(lambda: env.step(action), args.seconds))

        for round_ in range(args.rounds):
            run_fast(measure_async_side())
            record("sync", sync_rate(lambda: sync_env.step(action), args.seconds))
            print(
                f"round {round_ + 1}: "
                + "  ".join(f"{name} {values[-1]:,.0f}" for name, values in figures.items())
                + " steps/s",
                flush=True,
            )
    finally:
        sync_env.close()
        for process in [raw_server, *hogs]:
            process.kill()
            process.wait()

    medians = {name: statistics.median(values) for name, values in figures.items()}

    def per_round(ours: str, base: str) -> float:
        return statistics.median(o / b for o, b in zip(figures[ours], figures[base], strict=True))

    result = {
        "message_size": args.message_size,
        "hogs": args.hog,
        "raw_steps_per_s": round(medians["raw"]),
        "async_steps_per_s": round(medians["async"]),
        "sync_steps_per_s": round(medians["sync"]),
        "async_vs_raw": round(per_round("async", "raw"), 3),
        "sync_vs_async": round(per_round("sync", "async"), 3),
        **{f"{name}_cpu_us_per_step": round(statistics.median(cpu[name]), 1) for name in cpu},
    }
    print(json.dumps(result, indent=2))
    print(
        f"AsyncEnvClient = {result['async_vs_raw']:.2f} x the Sans-I/O ceiling (target >= 0.85); "
        f"EnvClient = {result['sync_vs_async']:.2f} x AsyncEnvClient (target >= 0.85)"
    )
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)


if __name__ == "__main__":
    main()
