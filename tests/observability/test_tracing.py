"""OpenTelemetry: the client's and the server's span of one step are one trace; with no SDK
nothing is traced and no trace context goes on the wire."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgspec

from envs.echo_env.client import AsyncEchoEnv
from envs.echo_env.models import EchoAction
from openenv.observability import tracing
from openenv.protocol import Step

ROOT = Path(__file__).resolve().parents[2]


def test_one_step_is_one_trace() -> None:
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("trace_one_step.py")), "traced message"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    spans = [json.loads(line) for line in done.stdout.splitlines()]
    steps = {span["kind"]: span for span in spans if span["name"] == "openenv.step"}
    client, server = steps["CLIENT"], steps["SERVER"]
    assert server["trace_id"] == client["trace_id"]
    assert server["parent"] == client["span_id"]
    assert server["attributes"]["openenv.env"] == "echo_env"
    assert server["attributes"]["openenv.session_id"] == client["attributes"]["openenv.session_id"]
    resets = {span["kind"]: span for span in spans if span["name"] == "openenv.reset"}
    assert resets["SERVER"]["parent"] == resets["CLIENT"]["span_id"]
    assert resets["SERVER"]["trace_id"] != server["trace_id"]  # one trace per call
    assert "trace-token" not in done.stdout  # no credential in any span


def test_untraced_requests_carry_nothing(echo_server: str) -> None:
    # This process configures no SDK (the traced test runs in its own process).
    assert tracing.tracer("openenv.client") is None
    assert b"trace" not in msgspec.msgpack.encode(Step(1, EchoAction(message="x")))


async def test_no_sdk_no_spans(echo_server: str) -> None:
    async with AsyncEchoEnv(echo_server) as env:
        assert env._tracer is None and not env._observed
        await env.reset()
        await env.step(EchoAction(message="x"))
