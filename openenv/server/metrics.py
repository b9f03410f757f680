"""What an env server counts, and its ``/metrics`` route (Prometheus text format).

Counting is plain Python arithmetic on one :class:`ServerMetrics` per app, bumped by the
sessions as they serve (a step records two durations and four numbers); prometheus-client
sees the counts only when ``/metrics`` is scraped, through :class:`ServerCollector`. The route
imports prometheus-client then, so a server without the package still serves sessions.

Label sets are bounded: request kinds, dialects, error codes and refusal reasons are closed
sets; session ids never become labels (they are in the logs).
"""

from __future__ import annotations

from bisect import bisect_left as _bisect
from collections.abc import Callable, Iterator
from time import perf_counter
from typing import TYPE_CHECKING, Any

from openenv.exceptions import ErrorCode
from openenv.observability.timings import BUCKETS, Timings

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

__all__ = ["DIALECTS", "KINDS", "REFUSALS", "ServerMetrics", "metrics_endpoint"]

#: The request kinds counted; ``tool`` for tool calls.
KINDS = ("reset", "step", "state", "fork", "close", "tool")
DIALECTS = ("openenv", "upstream")
#: Why a session was refused: a missing or wrong token, a full server, a client that cannot
#: take what it asked for (a fork ticket in upstream's dialect), anything else a newer check
#: refuses for.
REFUSALS = ("token", "capacity", "dialect", "other")
#: While steps are fast, one request in this many is timed (see :class:`ServerMetrics`).
SAMPLE_EVERY = 16
_SLOW_STEP_S = 0.001
#: Error codes of error replies, and ``too_big`` for a frame that ended its session.
ERROR_CODES = (*(code.value for code in ErrorCode if code is not ErrorCode.UNKNOWN), "too_big")


class ServerMetrics:
    """The counters of one app, shared by its sessions (all on one event loop: no locks).

    Step times are sampled: timing a step (four clock reads, two histograms) costs more than
    everything else counted, several percent of a fast env's step. While steps are fast (under
    1 ms), one request in :data:`SAMPLE_EVERY` is timed; after a slow one, every request is,
    until a fast one again. Counts (requests, errors, frames, bytes) are exact.

    Attributes:
        requests: requests decoded, by ``(kind, dialect)``, but for the steps answered on the
            hot path (``hot_steps``).
        step_total: server time per timed step answered with a result, from the request's
            frame to its reply's.
        step_env: the part of it spent in the env's ``step`` (for an async or blocking env,
            until its result is in).
    """

    __slots__ = (
        "_hot_env",
        "_hot_total",
        "bytes_in",
        "bytes_out",
        "countdown",
        "errors",
        "every",
        "forks",
        "frames_in",
        "frames_out",
        "hot_bytes_out",
        "hot_steps",
        "requests",
        "sessions_opened",
        "sessions_refused",
        "step_env",
        "step_total",
        "tickets_refused",
    )

    def __init__(self) -> None:
        self.sessions_opened = dict.fromkeys(DIALECTS, 0)
        self.sessions_refused = dict.fromkeys(REFUSALS, 0)
        self.requests = {(kind, dialect): 0 for kind in KINDS for dialect in DIALECTS}
        self.errors = dict.fromkeys(ERROR_CODES, 0)
        self.forks = 0  # envs copied for fork tickets
        self.tickets_refused = 0  # fork tickets used, expired or not ours
        self.frames_in = 0
        self.bytes_in = 0
        self.frames_out = 0
        self.bytes_out = 0
        self.step_total = {dialect: Timings() for dialect in DIALECTS}
        self.step_env = {dialect: Timings() for dialect in DIALECTS}
        # Steps answered on the hot path, and their replies' bytes: not in ``requests``,
        # ``frames_out`` and ``bytes_out`` (one addition fewer each, per step).
        self.hot_steps = 0
        self.hot_bytes_out = 0
        # The next request is timed when countdown reaches 0; then it starts again at every.
        self.every = SAMPLE_EVERY
        self.countdown = 1
        self._hot_total, self._hot_env = self.step_total["openenv"], self.step_env["openenv"]

    def refused(self, reason: str) -> None:
        """Count a refused session (``reason`` from :data:`REFUSALS`; others count as other)."""
        key = reason if reason in self.sessions_refused else "other"
        self.sessions_refused[key] += 1

    def error(self, code: str) -> None:
        """Count an error reply (or a session ended for a frame too big)."""
        if code in self.errors:
            self.errors[code] += 1

    def stepped(self, dialect: str, total: float, env: float) -> None:
        """Time a step answered with a result: ``total`` seconds in the server, ``env`` of
        them in the env (the request itself is counted where it was decoded)."""
        self.step_total[dialect].record(total)
        self.step_env[dialect].record(env)
        self._pace(total)

    def step_timed(self, began: float, entered: float, left: float, reply_bytes: int) -> None:
        """A timed step answered on the hot path (in the env from ``entered`` to ``left``,
        in the server from ``began`` until now). Written out, with no call per histogram."""
        now = perf_counter()
        self.hot_steps += 1
        self.hot_bytes_out += reply_bytes
        total, env = self._hot_total, self._hot_env
        seconds = now - began
        total.counts[_bisect(BUCKETS, seconds)] += 1
        total.sum += seconds
        self._pace(seconds)
        seconds = left - entered
        env.counts[_bisect(BUCKETS, seconds)] += 1
        env.sum += seconds

    def _pace(self, seconds: float) -> None:
        """Time every step while steps are slow (timing costs nothing next to them), one in
        :data:`SAMPLE_EVERY` once they are fast."""
        self.every = 1 if seconds >= _SLOW_STEP_S else SAMPLE_EVERY
        if self.countdown > self.every:
            self.countdown = self.every

    def collector(
        self, active_sessions: Callable[[], int], parked_forks: Callable[[], int]
    ) -> Collector:
        """A prometheus-client collector of these counts (imports prometheus-client)."""
        return _Collector(self, active_sessions, parked_forks)


class _Collector:
    def __init__(
        self, metrics: ServerMetrics, active: Callable[[], int], parked: Callable[[], int]
    ) -> None:
        self.metrics = metrics
        self.active = active
        self.parked = parked

    def describe(self) -> Iterator[Any]:
        return self.collect()

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from openenv.observability.prometheus import counter, histogram

        m = self.metrics
        yield GaugeMetricFamily(
            "openenv_server_sessions",
            "Sessions open now (forks parked under a ticket included).",
            self.active(),
        )
        yield GaugeMetricFamily(
            "openenv_server_forks_parked", "Forked envs waiting for their ticket.", self.parked()
        )
        yield counter(
            "openenv_server_sessions_opened",
            "Sessions accepted, by dialect.",
            {(d,): n for d, n in m.sessions_opened.items()},
            ["dialect"],
        )
        yield counter(
            "openenv_server_sessions_refused",
            "Sessions refused at the handshake, by reason.",
            {(r,): n for r, n in m.sessions_refused.items()},
            ["reason"],
        )
        requests = dict(m.requests)
        requests["step", "openenv"] += m.hot_steps
        yield counter(
            "openenv_server_requests",
            "Requests received, by kind and dialect.",
            requests,
            ["kind", "dialect"],
        )
        yield counter(
            "openenv_server_errors",
            "Error replies by code (too_big: a session ended for a frame over the size limit).",
            {(c,): n for c, n in m.errors.items()},
            ["code"],
        )
        yield counter("openenv_server_forks", "Envs copied for fork tickets.", m.forks)
        yield counter(
            "openenv_server_fork_tickets_refused",
            "Fork tickets refused: used before, expired or minted elsewhere.",
            m.tickets_refused,
        )
        yield counter("openenv_server_frames_received", "Message frames received.", m.frames_in)
        yield counter(
            "openenv_server_received_bytes", "Bytes of message frames received.", m.bytes_in
        )
        yield counter(
            "openenv_server_frames_sent", "Message frames sent.", m.frames_out + m.hot_steps
        )
        yield counter(
            "openenv_server_sent_bytes",
            "Bytes of message frames sent.",
            m.bytes_out + m.hot_bytes_out,
        )
        yield histogram(
            "openenv_server_step_seconds",
            "Server time per step (sampled): from the request frame to the reply frame.",
            {(d,): t for d, t in m.step_total.items()},
            ["dialect"],
        )
        yield histogram(
            "openenv_server_step_env_seconds",
            "Time per step (sampled) spent in the environment's step.",
            {(d,): t for d, t in m.step_env.items()},
            ["dialect"],
        )


def metrics_endpoint(collector: Collector) -> Callable[[], tuple[bytes, str]]:
    """A function rendering ``collector`` and the process's CPU and memory (prometheus-client's
    process collector: ``process_cpu_seconds_total``, ``process_resident_memory_bytes``, ...)
    as Prometheus text: its body and content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector
    from prometheus_client.exposition import generate_latest

    registry = CollectorRegistry()
    registry.register(collector)
    ProcessCollector(registry=registry)

    def render() -> tuple[bytes, str]:
        return generate_latest(registry), CONTENT_TYPE_LATEST

    return render
