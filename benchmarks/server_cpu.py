"""Server CPU per step: our server against the Sans-I/O ceiling server, same client, same frames.

One server process of each kind on a unix socket, driven in turn (interleaved rounds) by the
same minimal Sans-I/O client with ``--sessions`` closed loops sending our exact step frame; the
server's CPU time (from /proc) divided by the steps it answered is its cost per step. With
``--callgrind`` each server runs under ``valgrind --tool=callgrind`` instead and the figure is
instructions per step (two runs of different lengths, so start-up cancels out): repeatable on
a noisy machine, unlike time.

    .venv/bin/python benchmarks/server_cpu.py [--sessions 64] [--steps 2000] [--rounds 5]
    .venv/bin/python benchmarks/server_cpu.py --callgrind [--sessions 8] [--steps 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time

from cpu_compare import CALLGRIND_SESSIONS, callgrind_total, instructions_per_step, report

from envs.echo_env import EchoAction
from envs.echo_env.models import EchoObservation
from openenv import procfs
from openenv.bench import run_fast
from openenv.bench.references import _SansIOClient
from openenv.protocol import SUBPROTOCOL, Codec, Reset, Result, Step, request_type


def frames(message_size: int) -> tuple[bytes, bytes, int]:
    codec = Codec(request_type(EchoAction))
    action = EchoAction(message="x" * message_size)
    observation = EchoObservation(
        echoed_message=action.message, message_length=message_size, reward=message_size / 10
    )
    reply = codec.encode(Result(id=10**6, observation=observation))
    return codec.encode(Reset(id=0)), codec.encode(Step(id=10**6, action=action)), len(reply)


def server_command(kind: str, path: str, reply_bytes: int, callgrind: str | None) -> list[str]:
    prefix = []
    if callgrind is not None:
        prefix = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={callgrind}"]
    if kind == "ours":
        module = ["-m", "openenv", "serve", "envs.echo_env", "--uds", path]
    else:
        module = ["-m", "openenv.bench.sansio_server", str(reply_bytes), path]
    return [*prefix, sys.executable, *module]


def cpu_seconds(pid: int) -> float:
    used = procfs.cpu_seconds([pid])
    assert used is not None, f"server {pid} is gone"
    return used


async def connect(path: str, sessions: int, kind: str, reset: bytes) -> list[_SansIOClient]:
    clients = []
    for _ in range(sessions):
        client = await _SansIOClient.open(f"unix://{path}", "/ws", SUBPROTOCOL)
        if kind == "ours":
            await client.next_event()  # the greeting
            await client.call(reset)
        clients.append(client)
    return clients


async def drive(clients: list[_SansIOClient], step: bytes, steps: int) -> None:
    async def loop(client: _SansIOClient) -> None:
        for _ in range(steps):
            await client.call(step)

    await asyncio.gather(*(loop(c) for c in clients))


async def wait_for_socket(path: str, process: subprocess.Popen[bytes]) -> None:
    """Until the server prints its address (it accepts connections from then on)."""
    assert process.stdout is not None
    if not await asyncio.to_thread(process.stdout.readline):
        raise RuntimeError(f"server exited: {process.args}")


async def timed(args: argparse.Namespace) -> None:
    reset, step, reply_bytes = frames(args.message_size)
    with tempfile.TemporaryDirectory(prefix="oe-cpu-") as directory:
        servers, clients = {}, {}
        for kind in ("ours", "sansio"):
            path = f"{directory}/{kind}.sock"
            servers[kind] = subprocess.Popen(  # noqa: ASYNC220 - before anything is measured
                server_command(kind, path, reply_bytes, None),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            await wait_for_socket(path, servers[kind])
            clients[kind] = await connect(path, args.sessions, kind, reset)
        per_step: dict[str, list[float]] = {"ours": [], "sansio": []}
        try:
            for index in range(args.rounds):
                for kind in ("ours", "sansio") if index % 2 == 0 else ("sansio", "ours"):
                    began = cpu_seconds(servers[kind].pid)
                    started = time.perf_counter()
                    await drive(clients[kind], step, args.steps)
                    seconds = time.perf_counter() - started
                    used = cpu_seconds(servers[kind].pid) - began
                    total = args.steps * args.sessions
                    per_step[kind].append(used / total * 1e6)
                    rate = total / seconds
                    print(f"{kind:7} {rate:9,.0f} steps/s  {per_step[kind][-1]:6.1f} µs/step")
        finally:
            for process in servers.values():
                process.kill()
                process.wait()
    report("server", per_step)


async def instructions(kind: str, steps: int, args: argparse.Namespace) -> int:
    reset, step, reply_bytes = frames(args.message_size)
    with tempfile.TemporaryDirectory(prefix="oe-cg-") as directory:
        path, out = f"{directory}/s.sock", f"{directory}/callgrind.out"
        process = subprocess.Popen(  # noqa: ASYNC220 - before anything is measured
            server_command(kind, path, reply_bytes, out),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            await wait_for_socket(path, process)
            clients = await connect(path, args.sessions, kind, reset)
            await drive(clients, step, steps)
            for client in clients:
                assert client.transport is not None
                client.transport.close()
        finally:
            process.send_signal(signal.SIGINT)  # a clean exit: callgrind writes its counts
            process.wait(120)
        return callgrind_total(out)


def counted(args: argparse.Namespace) -> None:
    for kind in ("ours", "sansio"):

        def count(steps: int, kind: str = kind) -> int:
            return run_fast(instructions(kind, steps, args))

        per_step = instructions_per_step(count, args.steps, args.sessions)
        print(f"{kind:7} {per_step:10,.0f} instructions/step")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--sessions", type=int, help=f"default 64, {CALLGRIND_SESSIONS} with --callgrind"
    )
    parser.add_argument("--steps", type=int, default=2000, help="per session and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--message-size", type=int, default=100)
    parser.add_argument("--callgrind", action="store_true")
    args = parser.parse_args()
    if args.sessions is None:
        args.sessions = CALLGRIND_SESSIONS if args.callgrind else 64
    if args.callgrind:
        counted(args)
    else:
        run_fast(timed(args))


if __name__ == "__main__":
    main()
