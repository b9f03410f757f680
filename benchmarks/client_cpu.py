"""Client CPU per step: ``AsyncEnvClient`` against the Sans-I/O ceiling client, same server.

One of our echo servers on a unix socket; ``--sessions`` closed loops of our client, then as
many of the minimal Sans-I/O client of ``openenv.bench.references`` sending our exact step
frame, in interleaved rounds; this process's CPU time divided by the steps is a client's cost
per step. With ``--callgrind`` each client runs in a process of its own under
``valgrind --tool=callgrind`` and the figure is instructions per step (two runs of different
lengths, so start-up cancels out): repeatable on a noisy machine, unlike time.

    .venv/bin/python benchmarks/client_cpu.py [--sessions 64] [--steps 1000] [--rounds 5]
    .venv/bin/python benchmarks/client_cpu.py --callgrind [--sessions 8] [--steps 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

from cpu_compare import CALLGRIND_SESSIONS, callgrind_total, instructions_per_step, report

from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv.bench import run_fast
from openenv.bench.references import _SansIOClient
from openenv.protocol import SUBPROTOCOL, Codec, Reset, Step, request_type

Calls = list[Callable[[], Awaitable[object]]]


async def our_calls(address: str, sessions: int, action: EchoAction) -> Calls:
    envs = [AsyncEchoEnv(address) for _ in range(sessions)]
    for env in envs:
        await env.reset()
    return [lambda env=env: env.step(action) for env in envs]  # type: ignore[misc]


async def sansio_calls(address: str, sessions: int, action: EchoAction) -> Calls:
    codec = Codec(request_type(EchoAction))
    step = codec.encode(Step(id=10**6, action=action))
    clients = []
    for _ in range(sessions):
        client = await _SansIOClient.open(address, "/ws", SUBPROTOCOL)
        await client.next_event()  # the greeting
        await client.call(codec.encode(Reset(id=0)))
        clients.append(client)
    return [lambda client=client: client.call(step) for client in clients]  # type: ignore[misc]


async def drive(calls: Calls, steps: int) -> None:
    async def loop(call: Callable[[], Awaitable[object]]) -> None:
        for _ in range(steps):
            await call()

    await asyncio.gather(*(loop(call) for call in calls))


async def timed(address: str, args: argparse.Namespace) -> None:
    action = EchoAction(message="x" * args.message_size)
    clients = {
        "ours": await our_calls(address, args.sessions, action),
        "sansio": await sansio_calls(address, args.sessions, action),
    }
    per_step: dict[str, list[float]] = {"ours": [], "sansio": []}
    for index in range(args.rounds):
        for kind in ("ours", "sansio") if index % 2 == 0 else ("sansio", "ours"):
            began, started = time.process_time(), time.perf_counter()
            await drive(clients[kind], args.steps)
            seconds = time.perf_counter() - started
            total = args.steps * args.sessions
            per_step[kind].append((time.process_time() - began) / total * 1e6)
            rate = total / seconds
            print(f"{kind:7} {rate:9,.0f} steps/s  {per_step[kind][-1]:6.1f} µs/step")
    report("client", per_step)


async def worker(address: str, kind: str, args: argparse.Namespace) -> None:
    action = EchoAction(message="x" * args.message_size)
    make = our_calls if kind == "ours" else sansio_calls
    await drive(await make(address, args.sessions, action), args.steps)


def instructions(address: str, kind: str, steps: int, args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="oe-cg-") as directory:
        out = f"{directory}/callgrind.out"
        command = [sys.executable, __file__, "--worker", kind, "--address", address]
        command += ["--steps", str(steps), "--sessions", str(args.sessions)]
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command],
            check=True,
            capture_output=True,
        )
        return callgrind_total(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--sessions", type=int, help=f"default 64, {CALLGRIND_SESSIONS} with --callgrind"
    )
    parser.add_argument("--steps", type=int, default=1000, help="per session and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--message-size", type=int, default=100)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sessions is None:
        args.sessions = CALLGRIND_SESSIONS if args.callgrind else 64
    if args.worker:
        run_fast(worker(args.address, args.worker, args))
        return
    with tempfile.TemporaryDirectory(prefix="oe-ccpu-") as directory:
        path = f"{directory}/ours.sock"
        server = subprocess.Popen(
            [sys.executable, "-m", "openenv", "serve", "envs.echo_env", "--uds", path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            assert server.stdout is not None
            server.stdout.readline()  # serving from now on
            address = f"unix://{path}"
            if args.callgrind:
                for kind in ("ours", "sansio"):
                    count = functools.partial(instructions, address, kind, args=args)
                    per_step = instructions_per_step(count, args.steps, args.sessions)
                    print(f"{kind:7} {per_step:10,.0f} instructions/step")
            else:
                run_fast(timed(address, args))
        finally:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
