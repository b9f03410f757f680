"""Prometheus metric families from openenv's plain counters (needs ``prometheus-client``).

Imported only where metrics are exposed, so that counting never needs the package.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from openenv.observability.timings import Timings

__all__ = ["counter", "histogram"]


def counter(
    name: str,
    documentation: str,
    values: Mapping[Any, int] | int,
    labels: Iterable[str] = (),
) -> CounterMetricFamily:
    """A counter family (``name`` without ``_total``) with one sample per label tuple."""
    labels = list(labels)
    family = CounterMetricFamily(name, documentation, labels=labels)
    if isinstance(values, int):
        family.add_metric([], values)
    else:
        for label_values, value in values.items():
            family.add_metric(list(label_values), value)
    return family


def histogram(
    name: str,
    documentation: str,
    timings: Mapping[tuple[str, ...], Timings],
    labels: Iterable[str] = (),
) -> HistogramMetricFamily:
    """A histogram family in seconds, one series per label tuple."""
    family = HistogramMetricFamily(name, documentation, labels=list(labels))
    for label_values, timing in timings.items():
        family.add_metric(list(label_values), timing.cumulative(), timing.sum)
    return family
