"""``Timings``: a latency histogram kept in plain Python numbers, cheap enough for a hot path.

Recording a duration is a ``bisect`` and two additions; nothing is allocated and no lock is
taken (every recorder runs on one event loop). A Prometheus collector reads the counts when
scraped (:func:`openenv.observability.prometheus.histogram`), so a step pays no
prometheus-client call.
"""

from __future__ import annotations

from bisect import bisect_left

__all__ = ["BUCKETS", "Timings"]

#: Upper bounds in seconds: a step of a local echo env takes tens of microseconds, one in a
#: container that runs code up to seconds.
BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class Timings:
    """Counts of durations by bucket (the last one past every bound), and their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def record(self, seconds: float) -> None:
        """Count one duration."""
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    @property
    def count(self) -> int:
        """Durations recorded so far."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """``(upper bound, durations at or below it)`` pairs, ``+Inf`` last, as Prometheus
        histograms count them."""
        pairs, total = [], 0
        for bound, count in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            total += count
            pairs.append((bound, total))
        return pairs
