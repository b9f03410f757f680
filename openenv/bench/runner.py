"""``openenv bench``: throughput of an env pool, and of the baselines it is judged by.

Every session runs its own closed loop (send a step, wait for the reply, repeat), as rollout
workers do. ``--compare`` measures, in the same run, in interleaved rounds and against the same
number of server processes and connections over the same transport, the references of
:mod:`openenv.bench.references` (the Sans-I/O ceiling, the typical websockets app, per-step
HTTP) and reports our figures as ratios to each: machines are shared and noisy, so only ratios
taken within one round mean anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from openenv.bench import quantile
from openenv.bench.envs import sample_action
from openenv.bench.references import (
    Call,
    Reference,
    http_reference,
    sansio_reference,
    websockets_reference,
)
from openenv.launch.pool import EnvPool
from openenv.procfs import cpu_seconds, rss_kib
from openenv.progress import Progress
from openenv.protocol import Codec, Result, Step, request_type
from openenv.providers.base import Provider
from openenv.registry import EnvSpec, resolve
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
    transport: str = "unix"  # process provider: "unix" or "tcp" (ray servers are always tcp)
    backend: str = "process"  # ray provider: what each node runs servers as
    ray_address: str | None = None  # ray provider: the cluster (default: RAY_ADDRESS / "auto")
    compare: bool = False
    rounds: int = 5  # with compare: rounds of ours and each reference measured back to back
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


REFERENCES = ("sansio", "websockets", "http")


@dataclass
class BenchResult:
    """Ours and, with ``--compare``, the references, all from the round with the median
    ours / ``sansio`` ratio; ``round_ratios`` holds ours / each reference, per round."""

    env: str
    provider: str
    sessions: int
    servers: int
    message_size: int
    startup_s: float
    ours: LoopFigures
    references: dict[str, LoopFigures] = field(default_factory=dict)
    round_ratios: dict[str, list[float]] = field(default_factory=dict)
    http_client: str | None = None  # the faster HTTP client, which the baseline uses
    replaced: int = 0
    errors: int = 0
    # This process's memory growth from before the pool opened until its sessions stepped,
    # per session (with one session, mostly what the first connection imports).
    client_rss_kib_per_session: float = 0.0

    def ratio(self, reference: str) -> float | None:
        """Ours / ``reference``: the median of the per-round ratios (the lower middle one for
        an even count); for ``sansio``, the ratio of the figures shown."""
        ratios = self.round_ratios.get(reference)
        return statistics.median_low(ratios) if ratios else None

    def as_json(self) -> dict[str, Any]:
        """The flat figures ``--json`` writes: ours, then ``<reference>_*`` and
        ``vs_<reference>`` for each reference measured."""
        data: dict[str, Any] = {
            "env": self.env,
            "provider": self.provider,
            "sessions": self.sessions,
            "servers": self.servers,
            "message_size": self.message_size,
            "steps": self.ours.steps,
            # Microseconds: a short run's rate must be recomputable from steps / seconds.
            "seconds": round(self.ours.seconds, 6),
            "steps_per_s": round(self.ours.steps_per_s, 1),
            "p50_ms": round(self.ours.p50_ms, 3),
            "p99_ms": round(self.ours.p99_ms, 3),
            "cpu_us_per_step": round(self.ours.cpu_us_per_step, 1),
            "server_cpu_us_per_step": _rounded(self.ours.server_cpu_us_per_step),
            "startup_s": round(self.startup_s, 3),
            "replaced": self.replaced,
            "errors": self.errors,
            "client_rss_kib_per_session": round(self.client_rss_kib_per_session, 1),
        }
        for key, figures in self.references.items():
            data[f"{key}_steps_per_s"] = round(figures.steps_per_s, 1)
            data[f"{key}_p50_ms"] = round(figures.p50_ms, 3)
            data[f"{key}_p99_ms"] = round(figures.p99_ms, 3)
            data[f"{key}_cpu_us_per_step"] = round(figures.cpu_us_per_step, 1)
            data[f"{key}_server_cpu_us_per_step"] = _rounded(figures.server_cpu_us_per_step)
            data[f"vs_{key}"] = _rounded(self.ratio(key), 3)
            data[f"{key}_round_ratios"] = [round(r, 3) for r in self.round_ratios.get(key, [])]
        if self.http_client is not None:
            data["http_client"] = self.http_client
        return data


# The closed loop shared by every measurement.


def _optional(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


async def _closed_loops(
    calls: list[Callable[[], Awaitable[object]]],
    options: BenchOptions,
    label: str,
    server_pids: list[int] | None = None,
) -> LoopFigures:
    """Run every call in its own loop until ``options.steps`` each or ``options.duration``."""
    latencies: list[list[float]] = [[] for _ in calls]
    deadline = float("inf")  # set when the clock starts, below
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
    if options.steps is None:  # the measured time then covers the whole duration
        deadline = began + options.duration
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
        p50_ms=quantile(merged, 0.50) * 1e3,
        p99_ms=quantile(merged, 0.99) * 1e3,
        cpu_us_per_step=cpu / max(steps, 1) * 1e6,
        server_cpu_us_per_step=(
            None
            if server_began is None or server_end is None
            else (server_end - server_began) / max(steps, 1) * 1e6
        ),
    )


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
    env = {"OPENENV_MAX_SESSIONS": str(options.sessions)}
    if options.provider == "ray":
        from openenv.providers.ray import RayProvider

        if options.backend == "docker":
            return RayProvider(spec.image, backend="docker", address=options.ray_address), 1
        cluster = RayProvider(spec.name, address=options.ray_address, env=env)
        return cluster, -(-options.sessions // servers)
    if options.provider == "docker":
        from openenv.providers.docker import LocalDockerProvider

        return LocalDockerProvider(spec.image), 1
    from openenv.providers.process import LocalProcessProvider

    transport: Literal["unix", "tcp"] = "tcp" if options.transport == "tcp" else "unix"
    provider = LocalProcessProvider(spec.name, transport=transport, env=env)
    return provider, -(-options.sessions // servers)


def _server_count(options: BenchOptions) -> int:
    """Servers to start: one per session in containers, else ``--servers`` or one per core
    (of this machine, also for a Ray cluster: pass ``--servers`` for a bigger one)."""
    if options.provider == "docker" or (options.provider == "ray" and options.backend == "docker"):
        return options.sessions
    return options.servers or min(options.sessions, os.cpu_count() or 1)


def raise_fd_limit() -> None:
    """Lift this process's open-files limit to its hard limit: thousands of sessions need as
    many sockets here, and the server processes started from here inherit the limit."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def run_bench(options: BenchOptions) -> BenchResult:
    """Measure ours and, with ``compare``, the references, in interleaved rounds."""
    raise_fd_limit()
    rss_before = _rss_bytes()
    spec = resolve(options.env)
    servers = _server_count(options)
    provider, per_server = _provider(spec, options, servers)
    action = sample_action(spec, options.message_size)
    pool = EnvPool(
        spec.client(),
        provider,
        options.sessions,
        sessions_per_server=per_server,
        show_progress=options.progress,
    )
    async with pool:
        await pool.reset()
        sample = await pool.envs[0].step(action)
        calls: list[Call] = [functools.partial(env.step, action) for env in pool.envs]
        rss_per_session = (_rss_bytes() - rss_before) / options.sessions
        pids = [int(s.id) for s in provider.running()] if options.provider == "process" else []
        server_count = len({env.endpoint for env in pool.envs})
        async with contextlib.AsyncExitStack() as stack:
            measured = {"ours": Reference(calls, pids)}
            if options.compare:
                unix = pool.envs[0].endpoint.unix_socket is not None
                frame, reply_bytes = _wire_sample(action, sample)
                shape = (options.sessions, server_count, frame, reply_bytes, unix)
                measured["sansio"] = await stack.enter_async_context(sansio_reference(*shape))
                measured["websockets"] = await stack.enter_async_context(
                    websockets_reference(*shape)
                )
                http = _faster_http(options, spec, server_count, action, unix)
                measured["http"] = await stack.enter_async_context(http)
            figures, ratios = await _interleaved(measured, options)
        return BenchResult(
            env=options.env,
            provider=_provider_name(options),
            sessions=options.sessions,
            servers=server_count,
            message_size=options.message_size,
            startup_s=pool.stats.startup_s,
            ours=figures.pop("ours"),
            references=figures,
            round_ratios=ratios,
            http_client=measured["http"].label if "http" in measured else None,
            replaced=pool.stats.envs_replaced,
            errors=pool.stats.failed_calls,
            client_rss_kib_per_session=rss_per_session / 1024,
        )


def _rss_bytes() -> int:
    """This process's resident memory (0 where /proc is missing)."""
    return rss_kib(os.getpid()) * 1024


def _provider_name(options: BenchOptions) -> str:
    return f"ray/{options.backend}" if options.provider == "ray" else options.provider


async def _interleaved(
    measured: dict[str, Reference], options: BenchOptions
) -> tuple[dict[str, LoopFigures], dict[str, list[float]]]:
    """Measure each in turn, ``options.rounds`` times, reversing the order every other round;
    return the figures of the median round and, per reference, ours / it in every round.

    The machine's speed drifts by tens of percent over seconds (shared cores), so only
    measurements taken back to back see the same machine: the ratio is taken within each
    round, and the round with the median ours / ``sansio`` ratio is the one reported, every
    side of it (medians taken independently could come from a faster and a slower machine).
    Without references, the round with the median steps/s.
    """
    rounds: dict[str, list[LoopFigures]] = {name: [] for name in measured}
    names = list(measured)
    for index in range(options.rounds if len(names) > 1 else 1):
        for name in names if index % 2 == 0 else names[::-1]:
            reference = measured[name]
            rounds[name].append(
                await _closed_loops(reference.calls, options, name, reference.pids or None)
            )
    ratios = {
        name: [o.steps_per_s / r.steps_per_s for o, r in zip(rounds["ours"], figures, strict=True)]
        for name, figures in rounds.items()
        if name != "ours"
    }
    keys = ratios.get("sansio") or [figures.steps_per_s for figures in rounds["ours"]]
    median = keys.index(statistics.median_low(keys))
    return {name: figures[median] for name, figures in rounds.items()}, ratios


@contextlib.asynccontextmanager
async def _faster_http(
    options: BenchOptions, spec: EnvSpec, servers: int, action: Any, unix: bool
) -> AsyncIterator[Reference]:
    """The HTTP baseline with whichever client, aiohttp or httpx, is faster in one short
    round each, measured back to back."""
    import msgspec

    body = msgspec.json.encode(action)
    trial = dataclasses.replace(options, duration=min(options.duration, 1.0), steps=None)
    rates = {}
    for client in ("aiohttp", "httpx"):
        async with http_reference(options.sessions, servers, spec.name, body, unix, client) as ref:
            rates[client] = (await _closed_loops(ref.calls, trial, client)).steps_per_s
    faster = max(rates, key=rates.__getitem__)
    async with http_reference(options.sessions, servers, spec.name, body, unix, faster) as ref:
        yield ref


def _wire_sample(action: Any, reply: StepResult[Any]) -> tuple[bytes, int]:
    """The step frame our client sends for ``action``, and the size of the frame that carried
    the env's real ``reply`` to it: the baselines exchange frames of exactly these sizes."""
    codec = Codec(request_type(type(action)))
    frame = codec.encode(Step(id=10**6, action=action))
    return frame, len(codec.encode(Result(id=10**6, observation=reply.observation)))


def format_result(result: BenchResult) -> str:
    """The human summary ``openenv bench`` prints."""
    lines = [
        f"env={result.env} provider={result.provider} sessions={result.sessions} "
        f"servers={result.servers} message={result.message_size} B",
        f"start-up      {result.startup_s:8.2f} s",
        f"client memory {result.client_rss_kib_per_session:8.1f} KiB per session",
    ]
    rows = [("ours", result.ours)] + [
        (_LABELS[name], result.references.get(name)) for name in REFERENCES
    ]
    lines.append(
        f"{'':14} {'steps/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'client us/step':>15} "
        f"{'servers us/step':>16}"
    )
    for name, figures in rows:
        if figures is not None:
            lines.append(
                f"{name:14} {figures.steps_per_s:10,.0f} {figures.p50_ms:8.3f} "
                f"{figures.p99_ms:8.3f} {figures.cpu_us_per_step:15.1f} "
                f"{_optional(figures.server_cpu_us_per_step):>16}"
            )
    for name in REFERENCES:
        ratios = result.round_ratios.get(name)
        if ratios:
            what = _RATIO_LABELS[name]
            if name == "http":
                what += f" ({result.http_client})"
            lines.append(
                f"ours / {what:<32} = {result.ratio(name):6.2f}  (median of {len(ratios)} "
                f"interleaved rounds; {min(ratios):.2f}-{max(ratios):.2f})"
            )
    if result.replaced or result.errors:
        lines.append(f"envs replaced {result.replaced}, failed calls {result.errors}")
    return "\n".join(lines)


_LABELS = {"sansio": "sansio ceiling", "websockets": "websockets app", "http": "http/step"}
_RATIO_LABELS = {
    "sansio": "Sans-I/O ceiling",
    "websockets": "websockets asyncio app",
    "http": "per-step HTTP POST",
}
