"""``openenv bench``: throughput of an env pool, and of the baselines it is judged by.

Every session runs its own closed loop (send a step, wait for the reply, repeat), as rollout
workers do. ``--compare`` measures, in the same run and against the same number of server
processes and connections, a bare ``websockets`` ping-pong with frames of the same size (the
ceiling) and the same env behind a per-step HTTP POST (the baseline), and reports our figures
as ratios to both: machines are shared and noisy, so only same-run ratios mean anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from openenv.bench.envs import EnvSpec, resolve_env
from openenv.launch.pool import EnvPool
from openenv.procfs import cpu_seconds
from openenv.progress import Progress
from openenv.protocol import Codec, Result, Step, request_type
from openenv.providers.base import Provider
from openenv.types import StepResult

__all__ = ["BenchOptions", "BenchResult", "LoopFigures", "run_bench"]


@dataclass(frozen=True)
class BenchOptions:
    env: str = "echo"
    provider: str = "process"
    sessions: int = 8
    steps: int | None = None  # per session; None: run for ``duration``
    duration: float = 5.0
    message_size: int = 100
    servers: int | None = None  # process provider: server processes (default: one per core)
    compare: bool = False
    rounds: int = 5  # with compare: rounds of ours and the raw ceiling measured back to back
    progress: bool = True


@dataclass
class LoopFigures:
    """One closed-loop measurement."""

    steps: int
    seconds: float
    steps_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_step: float
    server_cpu_us_per_step: float | None = None  # summed over the server processes


@dataclass
class BenchResult:
    env: str
    provider: str
    sessions: int
    servers: int
    message_size: int
    startup_s: float
    ours: LoopFigures
    raw: LoopFigures | None = None
    http: LoopFigures | None = None
    replaced: int = 0
    errors: int = 0
    raw_round_ratios: list[float] = field(default_factory=list)  # ours / raw, per round

    @property
    def vs_raw(self) -> float | None:
        """Ours / the raw ceiling: the median of the per-round ratios (the lower middle one
        for an even count), which is the ratio of the ``ours`` and ``raw`` figures shown."""
        return statistics.median_low(self.raw_round_ratios) if self.raw_round_ratios else None

    def as_json(self) -> dict[str, Any]:
        """The flat figures ``--json`` writes."""
        data: dict[str, Any] = {
            "env": self.env,
            "provider": self.provider,
            "sessions": self.sessions,
            "servers": self.servers,
            "message_size": self.message_size,
            "steps": self.ours.steps,
            "seconds": round(self.ours.seconds, 3),
            "steps_per_s": round(self.ours.steps_per_s, 1),
            "p50_ms": round(self.ours.p50_ms, 3),
            "p99_ms": round(self.ours.p99_ms, 3),
            "cpu_us_per_step": round(self.ours.cpu_us_per_step, 1),
            "server_cpu_us_per_step": _rounded(self.ours.server_cpu_us_per_step),
            "startup_s": round(self.startup_s, 3),
            "replaced": self.replaced,
            "errors": self.errors,
        }
        for name, figures in (("raw", self.raw), ("http", self.http)):
            if figures is not None:
                data[f"{name}_steps_per_s"] = round(figures.steps_per_s, 1)
                data[f"{name}_p50_ms"] = round(figures.p50_ms, 3)
                data[f"{name}_p99_ms"] = round(figures.p99_ms, 3)
                data[f"{name}_cpu_us_per_step"] = round(figures.cpu_us_per_step, 1)
                data[f"{name}_server_cpu_us_per_step"] = _rounded(figures.server_cpu_us_per_step)
                data[f"vs_{name}"] = round(self.ours.steps_per_s / figures.steps_per_s, 3)
        if self.raw_round_ratios:  # vs_raw above is the median of these
            data["raw_round_ratios"] = [round(ratio, 3) for ratio in self.raw_round_ratios]
        return data


# The closed loop shared by every measurement.


def _optional(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


async def _closed_loops(
    calls: list[Callable[[], Awaitable[object]]],
    options: BenchOptions,
    label: str,
    server_pids: list[int] | None = None,
) -> LoopFigures:
    """Run every call in its own loop until ``options.steps`` each or ``options.duration``."""
    latencies: list[list[float]] = [[] for _ in calls]
    deadline = time.perf_counter() + options.duration if options.steps is None else float("inf")
    limit = options.steps if options.steps is not None else sys.maxsize

    async def loop(call: Callable[[], Awaitable[object]], record: list[float]) -> None:
        clock = time.perf_counter
        while len(record) < limit:
            started = clock()
            await call()
            now = clock()
            record.append(now - started)
            if now >= deadline:
                return

    pids = server_pids or []
    server_began = cpu_seconds(pids) if pids else None
    cpu_began, began = time.process_time(), time.perf_counter()
    async with _live_progress(options, label, latencies, began):
        await asyncio.gather(
            *(loop(call, record) for call, record in zip(calls, latencies, strict=True))
        )
    seconds = time.perf_counter() - began
    cpu = time.process_time() - cpu_began
    server_end = cpu_seconds(pids) if server_began is not None else None
    merged = sorted(x for record in latencies for x in record)
    steps = len(merged)
    return LoopFigures(
        steps=steps,
        seconds=seconds,
        steps_per_s=steps / seconds,
        p50_ms=_quantile(merged, 0.50) * 1e3,
        p99_ms=_quantile(merged, 0.99) * 1e3,
        cpu_us_per_step=cpu / max(steps, 1) * 1e6,
        server_cpu_us_per_step=(
            None
            if server_began is None or server_end is None
            else (server_end - server_began) / max(steps, 1) * 1e6
        ),
    )


def _quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextlib.asynccontextmanager
async def _live_progress(
    options: BenchOptions, label: str, latencies: list[list[float]], began: float
) -> AsyncIterator[None]:
    """A live bar: steps done and the running rate (steps) or seconds elapsed (duration)."""
    total = options.steps * len(latencies) if options.steps is not None else options.duration

    async def tick(progress: Progress) -> None:
        while True:
            await asyncio.sleep(0.25)
            done = sum(len(r) for r in latencies)
            elapsed = time.perf_counter() - began
            completed = done if options.steps is not None else min(elapsed, options.duration)
            progress.update(completed=completed, info=f"{done / elapsed:,.0f} steps/s")

    with Progress(f"{label:<6}", total=total, enabled=options.progress) as progress:
        ticker = asyncio.ensure_future(tick(progress))
        try:
            yield
        finally:
            ticker.cancel()


# Ours: an EnvPool.


def _provider(spec: EnvSpec, options: BenchOptions, servers: int) -> tuple[Provider, int]:
    """The provider and how many sessions share one server."""
    if options.provider == "docker":
        from openenv.providers.docker import LocalDockerProvider

        return LocalDockerProvider(spec.image), 1
    from openenv.providers.process import LocalProcessProvider

    env = {"OPENENV_MAX_SESSIONS": str(options.sessions)}
    return LocalProcessProvider(spec.app, env=env), -(-options.sessions // servers)


def _server_count(options: BenchOptions) -> int:
    if options.provider == "docker":
        return options.sessions
    return options.servers or min(options.sessions, os.cpu_count() or 1)


async def run_bench(options: BenchOptions) -> BenchResult:
    """Measure ours, then (with ``compare``) the raw ceiling and the HTTP baseline."""
    spec = resolve_env(options.env)
    servers = _server_count(options)
    provider, per_server = _provider(spec, options, servers)
    action = spec.action(options.message_size)
    pool = EnvPool(
        spec.client,
        provider,
        options.sessions,
        sessions_per_server=per_server,
        show_progress=options.progress,
    )
    async with pool:
        await pool.reset()
        frame, reply_bytes = _wire_sample(action, await pool.envs[0].step(action))
        calls: list[Callable[[], Awaitable[object]]] = [
            functools.partial(env.step, action) for env in pool.envs
        ]
        pids = [int(s.id) for s in provider.running()] if options.provider == "process" else None
        unix = pool.envs[0].endpoint.unix_socket is not None
        async with contextlib.AsyncExitStack() as stack:
            measured = {"ours": (calls, pids)}
            if options.compare:
                raw = _raw_ceiling(options, servers, frame, reply_bytes, unix)
                measured["raw"] = await stack.enter_async_context(raw)
            figures, ratios = await _interleaved(measured, options)
        result = BenchResult(
            env=options.env,
            provider=options.provider,
            sessions=options.sessions,
            servers=len({env.endpoint for env in pool.envs}),
            message_size=options.message_size,
            startup_s=pool.stats.startup_s,
            ours=figures["ours"],
            raw=figures.get("raw"),
            replaced=pool.stats.envs_replaced,
            errors=pool.stats.failed_calls,
            raw_round_ratios=ratios,
        )
    if options.compare:
        result.http = await _http_baseline(options, spec, servers, action)
    return result


async def _interleaved(
    measured: dict[str, tuple[list[Callable[[], Awaitable[object]]], list[int] | None]],
    options: BenchOptions,
) -> tuple[dict[str, LoopFigures], list[float]]:
    """Measure each in turn, ``options.rounds`` times, alternating the order; return the
    figures of the median round and, per round, ours / raw.

    The machine's speed drifts by tens of percent over seconds (shared cores), so only
    measurements taken back to back see the same machine: the ratio is taken within each
    round, and the round with the median ratio is the one reported, both sides of it (two
    medians taken independently could come from rounds on a faster and a slower machine).
    Without a ceiling, the round with the median steps/s.
    """
    rounds: dict[str, list[LoopFigures]] = {name: [] for name in measured}
    names = list(measured)
    for index in range(options.rounds if len(names) > 1 else 1):
        for name in names if index % 2 == 0 else names[::-1]:
            calls, pids = measured[name]
            rounds[name].append(await _closed_loops(calls, options, name, pids))
    ratios = [
        ours.steps_per_s / raw.steps_per_s
        for ours, raw in zip(rounds["ours"], rounds.get("raw", []), strict=False)
    ]
    keys = ratios or [figures.steps_per_s for figures in rounds["ours"]]
    median = keys.index(statistics.median_low(keys))
    return {name: figures[median] for name, figures in rounds.items()}, ratios


def _wire_sample(action: Any, reply: StepResult[Any]) -> tuple[bytes, int]:
    """The step frame our client sends for ``action``, and the size of the frame that carried
    the env's real ``reply`` to it: the baselines exchange frames of exactly these sizes."""
    codec = Codec(request_type(type(action)))
    frame = codec.encode(Step(id=10**6, action=action))
    return frame, len(codec.encode(Result(id=10**6, observation=reply.observation)))


# Baselines, each in their own server processes.


@dataclass(frozen=True)
class _Baseline:
    addresses: list[str]
    pids: list[int]


@contextlib.asynccontextmanager
async def _servers(commands: list[list[str]]) -> AsyncIterator[_Baseline]:
    """Start one baseline server per command; each prints its address on its first line."""
    processes = [
        subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is measured
            [sys.executable, "-m", *command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    try:
        addresses = []
        for process in processes:
            assert process.stdout is not None
            line = await asyncio.to_thread(process.stdout.readline)
            if not line:
                raise RuntimeError(f"baseline server {process.args!r} failed to start")
            addresses.append(line.strip())
        yield _Baseline(addresses, [process.pid for process in processes])
    finally:
        for process in processes:
            process.kill()
        for process in processes:
            process.wait()


@contextlib.asynccontextmanager
async def _raw_ceiling(
    options: BenchOptions, servers: int, frame: bytes, reply_bytes: int, unix: bool
) -> AsyncIterator[tuple[list[Callable[[], Awaitable[object]]], list[int]]]:
    """Connections to servers that only answer: the same frames over the same transport.
    Yields one ping-pong call per connection, and the servers' pids."""
    from websockets.asyncio.client import connect, unix_connect

    with tempfile.TemporaryDirectory(prefix="oe-raw-") as directory:
        commands = [
            ["openenv.bench.raw_server", str(reply_bytes)]
            + ([f"{directory}/raw{i}.sock"] if unix else [])
            for i in range(servers)
        ]
        async with _servers(commands) as baseline, contextlib.AsyncExitStack() as stack:
            urls = baseline.addresses
            connections = []
            for index in range(options.sessions):
                url = urls[index % servers]
                opened = (
                    unix_connect(url.removeprefix("unix://"), "ws://localhost/", **_RAW_OPTIONS)
                    if url.startswith("unix://")
                    else connect(url, **_RAW_OPTIONS)
                )
                connections.append(await stack.enter_async_context(opened))

            def ping_pong(ws: Any) -> Callable[[], Awaitable[object]]:
                async def call() -> object:
                    await ws.send(frame)
                    return await ws.recv()

                return call

            yield [ping_pong(ws) for ws in connections], baseline.pids


_RAW_OPTIONS: dict[str, Any] = {"compression": None, "proxy": None, "max_size": None}


async def _http_baseline(
    options: BenchOptions, spec: EnvSpec, servers: int, action: Any
) -> LoopFigures:
    import httpx
    import msgspec

    body = msgspec.json.encode(action)
    async with _servers([["openenv.bench.http_server", spec.app]] * servers) as baseline:
        urls = baseline.addresses
        limits = httpx.Limits(
            max_connections=options.sessions, max_keepalive_connections=options.sessions
        )
        # TCP_NODELAY: without it, small requests meet delayed ACKs (~40 ms a step) and the
        # baseline would look far worse than a tuned HTTP env server is.
        nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        transport = httpx.AsyncHTTPTransport(limits=limits, socket_options=nodelay)
        async with httpx.AsyncClient(transport=transport, trust_env=False, timeout=60) as http:

            def session(index: int) -> Callable[[], Awaitable[object]]:
                base = urls[index % servers]
                headers = {"x-session": str(index), "content-type": "application/json"}

                async def call() -> object:
                    response = await http.post(f"{base}/step", content=body, headers=headers)
                    return response.content

                return call

            for index in range(options.sessions):
                await http.post(f"{urls[index % servers]}/reset", headers={"x-session": str(index)})
            calls = [session(i) for i in range(options.sessions)]
            return await _closed_loops(calls, options, "http", baseline.pids)


def format_result(result: BenchResult) -> str:
    """The human summary ``openenv bench`` prints."""
    lines = [
        f"env={result.env} provider={result.provider} sessions={result.sessions} "
        f"servers={result.servers} message={result.message_size} B",
        f"start-up      {result.startup_s:8.2f} s",
    ]
    rows = [("ours", result.ours), ("raw ws", result.raw), ("http/step", result.http)]
    lines.append(
        f"{'':10} {'steps/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'client us/step':>15} "
        f"{'servers us/step':>16}"
    )
    for name, figures in rows:
        if figures is not None:
            lines.append(
                f"{name:10} {figures.steps_per_s:10,.0f} {figures.p50_ms:8.3f} "
                f"{figures.p99_ms:8.3f} {figures.cpu_us_per_step:15.1f} "
                f"{_optional(figures.server_cpu_us_per_step):>16}"
            )
    ours = result.ours.steps_per_s
    if result.vs_raw is not None:
        ratios = result.raw_round_ratios
        lines.append(
            f"ours / raw websockets ceiling = {result.vs_raw:.2f} (median of {len(ratios)} "
            f"back-to-back rounds; {min(ratios):.2f}-{max(ratios):.2f})"
        )
    if result.http is not None:
        lines.append(f"ours / per-step HTTP POST     = {ours / result.http.steps_per_s:.1f}")
    if result.replaced or result.errors:
        lines.append(f"envs replaced {result.replaced}, failed calls {result.errors}")
    return "\n".join(lines)
