"""``openenv top``: a live view of the env servers the providers of this machine run (local
processes and Docker containers; with ``--ray``, every env-host of a Ray cluster).

Each refresh scrapes every server's ``/metrics`` (``openenv.observability.scrape``) and shows,
per server: sessions open, steps per second and p50/p99 server time per step over the last
interval (from the step-time histogram's change), errors so far, CPU and memory. ``q`` or
Ctrl-C quits and gives the terminal back as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from openenv.observability.scrape import Snapshot, parse, scrape

__all__ = ["Row", "collect", "render", "run"]


@dataclass
class Row:
    """One server: its latest snapshot (None: it did not answer, ``error`` says why)."""

    kind: str
    id: str
    address: str
    snapshot: Snapshot | None = None
    error: str | None = None


async def collect(ray: bool = False, ray_address: str | None = None) -> list[Row]:
    """Scrape every server once."""
    if ray:
        from openenv.providers.ray_housekeeping import host_metrics

        taken = time.monotonic()
        rows = []
        for host, found in await asyncio.to_thread(host_metrics, ray_address):
            node = host.split(":")[2][:8] if host.count(":") >= 2 else "?"
            row = Row(f"ray {node}", found["id"], found["address"], error=found.get("error"))
            if "text" in found:
                row.snapshot = parse(found["text"], taken)
            rows.append(row)
        return rows
    from openenv.providers.listing import local_servers

    servers = local_servers()
    texts = await asyncio.gather(
        *(scrape(server.endpoint) for server in servers), return_exceptions=True
    )
    taken = time.monotonic()
    rows = []
    for server, text in zip(servers, texts, strict=True):
        row = Row(server.kind, server.id, server.address)
        if isinstance(text, BaseException):
            row.error = f"{type(text).__name__}: {text}" if str(text) else type(text).__name__
        else:
            row.snapshot = parse(text, taken)
        rows.append(row)
    return rows


def quantile(now: dict[float, float], before: dict[float, float], q: float) -> float | None:
    """The upper bound of the histogram bucket holding quantile ``q`` of the steps counted
    between two cumulative histograms (None: no step in between)."""
    bounds = sorted(now)
    counts = [now[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            return bound
    return bounds[-1]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds == float("inf"):
        return "> 60 s"
    if seconds < 0.001:
        return f"≤{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"≤{seconds * 1e3:.4g} ms"
    return f"≤{seconds:.3g} s"


def figures(now: Snapshot, before: Snapshot | None) -> dict[str, str]:
    """The columns of one server's row."""
    shown = {
        "sessions": str(now.sessions),
        "errors": str(now.errors),
        "memory": f"{now.memory_bytes / 2**20:.0f} MiB",
        "steps/s": "-",
        "p50": "-",
        "p99": "-",
        "cpu": "-",
    }
    if before is not None and now.taken > before.taken:
        elapsed = now.taken - before.taken
        shown["steps/s"] = f"{(now.steps - before.steps) / elapsed:,.0f}"
        shown["cpu"] = f"{100 * (now.cpu_seconds - before.cpu_seconds) / elapsed:.0f}%"
        shown["p50"] = _duration(quantile(now.step_buckets, before.step_buckets, 0.5))
        shown["p99"] = _duration(quantile(now.step_buckets, before.step_buckets, 0.99))
    return shown


_COLUMNS = ("sessions", "steps/s", "p50", "p99", "errors", "cpu", "memory")
_WIDTHS = {"sessions": 8, "steps/s": 8, "p50": 8, "p99": 8, "errors": 6, "cpu": 4, "memory": 8}


def render(rows: list[Row], previous: dict[tuple[str, str], Snapshot], title: str) -> Any:
    """A rich table of ``rows``; ``previous`` holds each server's snapshot before."""
    from rich.table import Table

    table = Table(title=title, title_justify="left", expand=False)
    table.add_column("KIND", no_wrap=True, min_width=7)
    table.add_column("SERVER", no_wrap=True, min_width=12, max_width=12)
    for column in _COLUMNS:
        table.add_column(column.upper(), justify="right", no_wrap=True, min_width=_WIDTHS[column])
    # The address gives way first on a narrow terminal.
    table.add_column("ADDRESS", no_wrap=True, overflow="ellipsis", ratio=1)
    for row in rows:
        if row.snapshot is None:
            table.add_row(
                row.kind, row.id[:12], *["-"] * len(_COLUMNS), f"{row.error} ({row.address})"
            )
            continue
        shown = figures(row.snapshot, previous.get((row.kind, row.id)))
        table.add_row(row.kind, row.id[:12], *(shown[c] for c in _COLUMNS), row.address)
    if not rows:
        table.caption = "no env servers found (start a pool, or openenv serve under a provider)"
    return table


@contextlib.contextmanager
def _keys() -> Iterator[asyncio.Event]:
    """An event set when ``q`` is pressed; the terminal reads keys at once meanwhile (and is
    restored afterwards). Without a terminal on stdin, only Ctrl-C (SIGINT) quits."""
    quit_pressed = asyncio.Event()
    if not sys.stdin.isatty():
        yield quit_pressed
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    loop = asyncio.get_running_loop()

    def on_key() -> None:
        if os.read(fd, 32).lower().startswith(b"q"):
            quit_pressed.set()

    tty.setcbreak(fd)  # keys arrive one by one, unechoed; Ctrl-C still raises SIGINT
    loop.add_reader(fd, on_key)
    try:
        yield quit_pressed
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def run(
    ray: bool = False, ray_address: str | None = None, interval: float = 1.0, once: bool = False
) -> int:
    """Show the servers until ``q`` or Ctrl-C (``once``: print one table, over one interval,
    and return)."""
    from rich.console import Console
    from rich.live import Live

    console = Console()
    where = "Ray cluster" if ray else "this machine"
    if once:  # two scrapes an interval apart: rates need both
        first = await collect(ray, ray_address)
        await asyncio.sleep(interval)
        before = {(r.kind, r.id): r.snapshot for r in first if r.snapshot is not None}
        console.print(render(await collect(ray, ray_address), before, f"openenv top: {where}"))
        return 0
    previous: dict[tuple[str, str], Snapshot] = {}
    with _keys() as quit_pressed, Live(console=console, screen=True, auto_refresh=False) as live:
        while not quit_pressed.is_set():
            rows = await collect(ray, ray_address)
            title = f"openenv top: {where}, {len(rows)} server(s), every {interval:g} s; q quits"
            live.update(render(rows, previous, title), refresh=True)
            previous = {(r.kind, r.id): r.snapshot for r in rows if r.snapshot is not None}
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(quit_pressed.wait(), interval)
    return 0
