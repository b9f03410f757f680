"""One-off bash scripts outside the agent's shell: a task's set-up and its tests."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from envs.terminal_env.server.shell import sweep

__all__ = ["ScriptResult", "run_script"]

_CHUNK = 1 << 16


@dataclass
class ScriptResult:
    exit_code: int
    output: bytes
    timed_out: bool


async def _capped(stream: asyncio.StreamReader, cap: int) -> bytes:
    kept = bytearray()
    while chunk := await stream.read(_CHUNK):
        kept += chunk[: max(0, cap - len(kept))]
    return bytes(kept)


async def run_script(
    argv: list[str], cwd: Path, env: Mapping[str, str], timeout_s: float, cap: int
) -> ScriptResult:
    """Run ``argv`` in a session of its own, its stdout and stderr together (the first
    ``cap`` bytes kept); past ``timeout_s`` everything in that session is killed."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert process.stdout is not None
    reading = asyncio.ensure_future(_capped(process.stdout, cap))
    timed_out = False
    try:
        async with asyncio.timeout(timeout_s):
            await process.wait()
    except TimeoutError:
        timed_out = True
    finally:
        # Its own jobs too: a test that left a server running must not outlive the episode.
        sweep(process.pid, None)
        await process.wait()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(1):
            await asyncio.shield(reading)
    if not reading.done():
        reading.cancel()
    output = reading.result() if reading.done() and not reading.cancelled() else b""
    code = process.returncode
    assert code is not None
    return ScriptResult(124 if timed_out else (128 - code if code < 0 else code), output, timed_out)
