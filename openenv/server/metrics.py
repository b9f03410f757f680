"""What an env server counts, and its ``/metrics`` route (Prometheus text format).

Counting is plain Python arithmetic on one :class:`ServerMetrics` per app, bumped by the
sessions as they serve (a step records two durations and four numbers); prometheus-client
sees the counts only when ``/metrics`` is scraped, through :class:`ServerCollector`. The route
imports prometheus-client then, so a server without the package still serves sessions.

Label sets are bounded: request kinds, dialects, error codes and refusal reasons are closed
sets; session ids never become labels (they are in the logs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from time import perf_counter
from typing import TYPE_CHECKING, Any

from openenv.exceptions import ErrorCode
from openenv.observability.timings import Timings

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
#: Error codes of error replies, and ``too_big`` for a frame that ended its session.
ERROR_CODES = (*(code.value for code in ErrorCode if code is not ErrorCode.UNKNOWN), "too_big")


class ServerMetrics:
    """The counters of one app, shared by its sessions (all on one event loop: no locks).

    Attributes:
        requests: requests decoded, by ``(kind, dialect)``; steps included, answered or not.
        step_total: server time per step answered with a result, from the request's frame to
            its reply's.
        step_env: the part of it spent in the env's ``step`` (for an async or blocking env,
            until its result is in).
    """

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

    def step_answered(self, began: float, env: float, reply_bytes: int) -> None:
        """A step of our dialect answered on the hot path: its reply frame is counted, and
        its times (from ``began`` until now, ``env`` of them in the env)."""
        self.frames_out += 1
        self.bytes_out += reply_bytes
        self.step_total["openenv"].record(perf_counter() - began)
        self.step_env["openenv"].record(env)

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
        yield counter(
            "openenv_server_requests",
            "Requests received, by kind and dialect.",
            m.requests,
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
        yield counter("openenv_server_frames_sent", "Message frames sent.", m.frames_out)
        yield counter("openenv_server_sent_bytes", "Bytes of message frames sent.", m.bytes_out)
        yield histogram(
            "openenv_server_step_seconds",
            "Server time per step: from the request frame to the reply frame.",
            {(d,): t for d, t in m.step_total.items()},
            ["dialect"],
        )
        yield histogram(
            "openenv_server_step_env_seconds",
            "Time per step spent in the environment's step.",
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
