"""Upstream OpenEnv's scaling benchmark, against our server (through upstream's dialect) and
against upstream's own server (openenv-core 0.3.0's create_app), on this machine.

The session shape is upstream's: N asyncio tasks start at once; each connects to ``/ws``,
sends ``{"type":"reset","data":{}}``, one ``{"type":"step","data":{"wait_seconds":1.0}}`` whose
env sleeps 1 s, then ``{"type":"close"}``. A session fails on any exception or error reply
(or no reply within 60 s). Sessions/s = successful sessions per second of the batch's wall
time. Both servers run the same sleep env (benchmarks/upstream/), in one process each, with a
session limit above N; the same raw-websockets JSON client (this script, one process) drives
both, alternating server by server for each N and repetition.

    make upstream-venv
    .venv/bin/python benchmarks/upstream_scaling.py --sessions 256 512 1024 2048 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM_PYTHON = os.environ.get("OPENENV_UPSTREAM_PYTHON", str(ROOT / ".venv-upstream/bin/python"))

UPSTREAM_SERVER = ROOT / "benchmarks/upstream/upstream_server.py"
_PORT = ["--port", "0", "--watch-parent"]

RESET = json.dumps({"type": "reset", "data": {}})
STEP = json.dumps({"type": "step", "data": {"wait_seconds": 1.0}})
CLOSE = json.dumps({"type": "close"})


async def session(url: str) -> str | None:
    """One session of upstream's benchmark; None on success, else why it failed."""
    try:
        async with connect(url, open_timeout=60, close_timeout=10, proxy=None) as ws:
            for frame in (RESET, STEP):
                await ws.send(frame)
                reply = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if reply.get("type") == "error":
                    return f"error reply: {reply['data'].get('code')}"
            await ws.send(CLOSE)
        return None
    except Exception as exc:
        return type(exc).__name__


async def batch(url: str, sessions: int) -> dict[str, Any]:
    started = time.perf_counter()
    failures = await asyncio.gather(*(session(url) for _ in range(sessions)))
    wall = time.perf_counter() - started
    ok = sum(f is None for f in failures)
    causes: dict[str, int] = {}
    for failure in failures:
        if failure is not None:
            causes[failure] = causes.get(failure, 0) + 1
    return {
        "sessions": sessions,
        "ok": ok,
        "success_rate": ok / sessions,
        "wall_s": wall,
        "sessions_per_s": ok / wall,
        "failures": causes,
    }


def start_ours(max_sessions: int) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "OPENENV_TOKEN": "", "OPENENV_MAX_SESSIONS": str(max_sessions)}
    process = subprocess.Popen(
        [sys.executable, "-m", "openenv", "serve", "benchmarks.upstream.sleep_env:app", *_PORT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert process.stdout is not None
    match = re.search(r"(ws://127\.0\.0\.1:\d+/ws)", process.stdout.readline())
    assert match, "our server did not start"
    return process, match[1]


def start_upstream(max_sessions: int, uvloop: bool) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    limit = ["--max-sessions", str(max_sessions), *(["--uvloop"] if uvloop else [])]
    process = subprocess.Popen(
        [UPSTREAM_PYTHON, str(UPSTREAM_SERVER), "--env", "sleep", *_PORT[:2], *limit],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # it logs a traceback for every client that closed first
        text=True,
        cwd="/",  # our openenv/ must not shadow upstream's
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("PORT "), f"upstream server did not start: {line!r}"
    return process, f"ws://127.0.0.1:{line.split()[1]}/ws"


def stop(process: subprocess.Popen[str]) -> None:
    assert process.stdin is not None
    process.stdin.close()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--upstream-uvloop",
        action="store_true",
        help="run upstream's server on uvloop too (not what openenv-core installs; pip install "
        "uvloop into its venv first)",
    )
    parser.add_argument("--json", default=str(ROOT / "benchmarks/results/upstream_scaling.json"))
    args = parser.parse_args()
    limit = max(args.sessions) * 2
    servers = {"ours": start_ours(limit), "upstream": start_upstream(limit, args.upstream_uvloop)}
    runs: list[dict[str, Any]] = []
    try:
        for sessions in args.sessions:
            for repetition in range(args.repeat):
                for name, (_, url) in servers.items():
                    result = await batch(url, sessions)
                    result.update(server=name, repetition=repetition)
                    runs.append(result)
                    print(
                        f"{name:9} N={sessions:5} rep {repetition}: "
                        f"{result['success_rate']:.1%} ok, {result['sessions_per_s']:7.1f} "
                        f"sessions/s, {result['wall_s']:.2f} s {result['failures'] or ''}",
                        flush=True,
                    )
                    await asyncio.sleep(1)  # let the server settle its closed sessions
    finally:
        for process, _ in servers.values():
            stop(process)
    summary = []
    for sessions in args.sessions:
        for name in servers:
            mine = [r for r in runs if r["server"] == name and r["sessions"] == sessions]
            summary.append(
                {
                    "server": name,
                    "sessions": sessions,
                    "mean_success_rate": statistics.mean(r["success_rate"] for r in mine),
                    "median_sessions_per_s": statistics.median(r["sessions_per_s"] for r in mine),
                }
            )
    print("\nserver     sessions  mean success  median sessions/s")
    for row in summary:
        print(
            f"{row['server']:9} {row['sessions']:9} {row['mean_success_rate']:12.1%} "
            f"{row['median_sessions_per_s']:18.1f}"
        )
    Path(args.json).write_text(
        json.dumps({"command": " ".join(sys.argv), "summary": summary, "runs": runs}, indent=1)
    )


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
