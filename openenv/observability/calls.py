"""``CallMetrics``: what an application's env clients count, for its own Prometheus registry.

One instance is shared by every client that is given it (a pool gives its own to all its
envs); a call adds one duration to a :class:`~openenv.observability.timings.Timings`, or one
to a failure count. prometheus-client reads them when the registry is scraped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from openenv.observability.timings import Timings

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

__all__ = ["CALL_KINDS", "CallMetrics"]

CALL_KINDS = ("reset", "step", "state", "fork", "tool")


class CallMetrics:
    """Latency of every call by kind (failed ones included), and the calls that failed.

    Args:
        registry: a prometheus-client registry to expose them on (``openenv_client_*``);
            None to count without exposing (``EnvPool`` registers its own collector).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.latency = {kind: Timings() for kind in CALL_KINDS}
        self.failures = dict.fromkeys(CALL_KINDS, 0)
        if registry is not None:
            registry.register(_Collector(self))

    def families(self) -> Iterator[Any]:
        """Their prometheus-client metric families (imports prometheus-client)."""
        from openenv.observability.prometheus import counter, histogram

        yield counter(
            "openenv_client_calls",
            "Env calls made, by kind (failed ones included).",
            {(kind,): t.count for kind, t in self.latency.items()},
            ["kind"],
        )
        yield counter(
            "openenv_client_call_failures",
            "Env calls that raised (error replies, time-outs, lost connections), by kind.",
            {(kind,): n for kind, n in self.failures.items()},
            ["kind"],
        )
        yield histogram(
            "openenv_client_call_seconds",
            "Time from sending a request to its reply, by kind.",
            {(kind,): t for kind, t in self.latency.items()},
            ["kind"],
        )


class _Collector:
    def __init__(self, metrics: CallMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        return self.metrics.families()

    def describe(self) -> Iterator[Any]:
        return self.metrics.families()
