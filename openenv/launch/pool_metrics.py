"""An ``EnvPool``'s Prometheus collector: its envs' calls (``openenv_client_*``) and what
``pool.stats`` counts (``openenv_pool_*``), read when the application's registry is scraped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openenv.launch.pool import EnvPool

__all__ = ["PoolCollector"]


class PoolCollector:
    """Registered on the registry given to ``EnvPool(registry=...)``."""

    def __init__(self, pool: EnvPool[Any]) -> None:
        self.pool = pool

    def describe(self) -> Iterator[Any]:
        return self.collect()

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from openenv.observability.prometheus import counter

        pool = self.pool
        stats = pool.stats
        if pool.metrics is not None:
            yield from pool.metrics.families()
        yield GaugeMetricFamily("openenv_pool_envs", "Env sessions the pool holds.", pool.size)
        yield GaugeMetricFamily(
            "openenv_pool_forks_open", "Forks made by pool.fork not closed yet.", pool.forks_open
        )
        yield GaugeMetricFamily(
            "openenv_pool_spares_ready",
            "Spare servers ready to hand out (fresh_per_episode pools).",
            pool.spares_ready,
        )
        yield GaugeMetricFamily(
            "openenv_pool_startup_seconds", "Seconds the pool took to start.", stats.startup_s
        )
        counts = {
            "openenv_pool_envs_replaced": (stats.envs_replaced, "Envs given a new session."),
            "openenv_pool_servers_replaced": (stats.servers_replaced, "Dead servers replaced."),
            "openenv_pool_failed_calls": (stats.failed_calls, "Env calls failed in batch calls."),
            "openenv_pool_forks": (stats.forks, "Envs made by pool.fork."),
            "openenv_pool_servers_started": (stats.servers_started, "Servers started."),
            "openenv_pool_servers_retired": (stats.servers_retired, "Spare servers retired."),
            "openenv_pool_server_start_failures": (
                stats.start_failures,
                "Spare server starts that failed.",
            ),
        }
        for name, (value, documentation) in counts.items():
            yield counter(name, documentation, value)
