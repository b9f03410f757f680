"""Throughput measurement: our client against the baselines it is judged by."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["quantile", "run_fast"]

T = TypeVar("T")


def run_fast(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on uvloop when installed, else asyncio: every measurement (ours and
    the baselines alike) then runs on the same, faster loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank, no interpolation; NaN if empty): the one
    rule every figure of the bench and of ``benchmarks/`` uses."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
