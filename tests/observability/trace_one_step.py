"""Run by test_tracing in a process of its own (an OpenTelemetry SDK, once set, stays set for
the process): a real uvicorn server and a client in one process with the SDK's in-memory
exporter; prints the finished spans as JSON lines."""

from __future__ import annotations

import asyncio
import json
import socket
import sys

import uvicorn
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from envs.echo_env.client import AsyncEchoEnv
from envs.echo_env.models import EchoAction
from envs.echo_env.server.echo_environment import EchoEnvironment
from openenv.server import ServerConfig, create_app
from openenv.server.serve import uvicorn_config

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)


async def main() -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(EchoEnvironment, config=ServerConfig(token="trace-token"))
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port, None))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    async with asyncio.timeout(20):
        while not server.started:  # noqa: ASYNC110 (uvicorn says so with a flag only)
            await asyncio.sleep(0.01)
    try:
        async with AsyncEchoEnv(f"ws://127.0.0.1:{port}/ws", token="trace-token") as env:
            await env.reset(seed=1)
            await env.step(EchoAction(message=sys.argv[1]))
    finally:
        server.should_exit = True
        await serving
    for span in exporter.get_finished_spans():
        parent = span.parent.span_id if span.parent is not None else None
        print(
            json.dumps(
                {
                    "name": span.name,
                    "kind": span.kind.name,
                    "trace_id": span.context.trace_id,
                    "span_id": span.context.span_id,
                    "parent": parent,
                    "attributes": dict(span.attributes or {}),
                }
            )
        )


asyncio.run(main())
