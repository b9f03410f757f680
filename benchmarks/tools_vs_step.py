"""What a tool call costs against a plain step of the same work, on one session.

The echo env does the same work both ways: ``step(EchoAction(message=m))`` and the tool
``echo_message(message=m)`` each count a step and hand ``m`` back. One async client (on uvloop)
drives one ``openenv serve envs.echo_env`` process on 127.0.0.1; each round times a burst of
plain steps and a burst of tool calls back to back (the order alternating), and a ratio is the
median of the per-round ratios (the machine is shared and noisy: only measurements taken back to
back see the same machine). Measured: wall time per call (a lockstep round trip), this process's
CPU per call, and the server process's CPU per call (/proc, in clock ticks: its per-round
ratios are coarse, the ratio of means over all rounds is not).

    .venv/bin/python benchmarks/tools_vs_step.py [--seconds 1] [--rounds 9] [--message-size 100]
        [--out benchmarks/results/tools_vs_step.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv import procfs
from openenv.bench import run_fast


async def burst(call: Callable[[], Awaitable[object]], seconds: float, server: int) -> list[float]:
    """Calls for about ``seconds``: µs of wall time, client CPU and server CPU per call."""
    count = 0
    server_cpu = procfs.cpu_seconds([server]) or 0.0
    started, cpu = time.perf_counter(), time.process_time()
    deadline = started + seconds
    while True:
        for _ in range(100):
            await call()
        count += 100
        now = time.perf_counter()
        if now >= deadline:
            break
    client = time.process_time() - cpu
    served = (procfs.cpu_seconds([server]) or 0.0) - server_cpu
    return [(now - started) / count * 1e6, client / count * 1e6, served / count * 1e6]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


async def measure(seconds: float, rounds: int, size: int) -> dict[str, Any]:
    message = "x" * size
    env = await AsyncEchoEnv.from_process(transport="tcp")
    try:
        handle = getattr(env, "handle", None)
        server = int(getattr(handle, "pid", 0)) or _server_pid()
        await env.reset()
        action = EchoAction(message=message)
        step_result = await env.step(action)
        tool_result = await env.call_tool("echo_message", message=message)
        assert step_result.observation.echoed_message == tool_result.observation.result

        async def step() -> object:
            return await env.step(action)

        async def tool() -> object:
            return await env.call_tool("echo_message", message=message)

        for call in (step, tool):  # warm up
            await burst(call, seconds / 4, server)
        steps: list[list[float]] = []
        tools: list[list[float]] = []
        for index in range(rounds):
            order = ((step, steps), (tool, tools))
            for call, into in order if index % 2 == 0 else reversed(order):
                into.append(await burst(call, seconds, server))
    finally:
        await env.close()
    result: dict[str, Any] = {}
    for position, name in enumerate(("wall_us", "client_cpu_us", "server_cpu_us")):
        plain = [r[position] for r in steps]
        called = [r[position] for r in tools]
        result[name] = {
            "step": summary(plain),
            "tool": summary(called),
            "ratio": summary([t / s for t, s in zip(called, plain, strict=True) if s > 0]),
            # Over every round at once: the server's CPU is read in clock ticks (10 ms), too
            # coarse for one short burst.
            "ratio_of_means": round(statistics.fmean(called) / statistics.fmean(plain), 3),
        }
    return result


def _server_pid() -> int:
    """The newest child process of this one: the server from_process started."""
    children = [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and procfs.parent_pid(int(p.name)) == os.getpid()
    ]
    return max(children)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per burst")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--message-size", type=int, default=100)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    load = os.getloadavg()
    result = run_fast(measure(args.seconds, args.rounds, args.message_size))
    report = {
        "benchmark": "tools_vs_step",
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "what": "echo env, one session, lockstep: step(EchoAction(m)) vs call_tool('echo_message', "
        "message=m), per call; ratio = tool / step, median of per-round ratios",
        "message_size": args.message_size,
        "rounds": args.rounds,
        "seconds_per_burst": args.seconds,
        "loadavg_before": [round(x, 2) for x in load],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        **result,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
