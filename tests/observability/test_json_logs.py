"""``openenv serve --log-format json``: every line is one JSON object with session and request
ids as fields, and no line holds the token or a fork ticket."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from envs.echo_env import AsyncEchoEnv, EchoAction
from openenv.client.async_client import AsyncEnvClient
from openenv.exceptions import AuthenticationError, EnvError

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "json-logs-secret-token"


@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_lines_with_ids_and_no_secrets(log_format: str) -> None:
    app = "tests.observability.fragile_env:app"
    options = ["--port", "0", "--log-format", log_format, "--log-level", "debug"]
    server = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "openenv", "serve", app, *options],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "OPENENV_TOKEN": TOKEN},
    )
    try:
        assert server.stdout is not None
        async with asyncio.timeout(30):
            line = await server.stdout.readline()  # "openenv: serving on ws://..."
        address = line.decode().split()[-1]
        async with AsyncEchoEnv(address, token=TOKEN) as env:
            await env.reset()
            await env.step(EchoAction(message="fine"))
            with pytest.raises(EnvError):
                await env.step(EchoAction(message="boom"))  # request id 3
            (ticket,) = await env.fork_tickets(1)
            async with AsyncEnvClient(address, ticket=ticket) as fork:
                await fork.connect()
            with pytest.raises(AuthenticationError):
                await AsyncEnvClient(address, ticket=ticket).connect()  # used already
            with pytest.raises(AuthenticationError):
                await AsyncEchoEnv(address, token=f"{TOKEN}-wrong").connect()
            assert env.hello is not None
            session_id = env.hello.session_id
    finally:
        server.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, errors = await server.communicate()
    stderr = errors.decode()
    # Debug level: websockets logs every handshake header and a preview of every frame.
    assert TOKEN not in stderr and ticket not in stderr
    assert "authorization: Bearer [redacted]" in stderr
    if log_format == "text":
        assert f"env raised in session {session_id}" in stderr
        return

    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    raised = [line for line in lines if line["message"].startswith("env raised")]
    assert [(line["session_id"], line["request_id"]) for line in raised] == [(session_id, 3)]
    opened = [line for line in lines if line.get("session_id") == session_id]
    assert any("opened" in line["message"] for line in opened)
    assert any(line.get("forked_from") == session_id for line in lines)
    assert {line.get("reason") for line in lines if line["level"] == "warning"} >= {
        "token",
        "ticket",
    }
