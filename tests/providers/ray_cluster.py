"""A real 2-node Ray cluster on this machine, on loopback only, for the RayProvider tests.

``ray.cluster_utils.Cluster`` starts a head and a second node as separate raylets on
127.0.0.1 (with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, set first thing in tests/conftest.py).
The health check is tightened so that a dead node is noticed in about 1.5 s, not about 15 s.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psutil
import pytest

# A node is declared dead after 3 missed checks 0.5 s apart (Ray's default: 5 x 3 s).
HEALTH_CHECK = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
}
NODE_OPTIONS: dict[str, Any] = {"num_cpus": 1, "object_store_memory": 80 * 1024 * 1024}


@dataclass
class RayCluster:
    """The running cluster: ``cluster`` is the ``ray.cluster_utils.Cluster``."""

    cluster: Any
    startup_s: float

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def alive_node_ids(self) -> list[str]:
        import ray

        return [node["NodeID"] for node in ray.nodes() if node["Alive"]]

    def worker_nodes(self) -> list[Any]:
        """The non-head nodes (``Node`` objects, for ``remove_node``)."""
        return list(self.cluster.worker_nodes)

    def ensure_two_nodes(self) -> None:
        """Add a node if a test removed one, and wait until Ray sees it."""
        while len(self.cluster.list_all_nodes()) < 2:
            self.cluster.add_node(**NODE_OPTIONS)
        self.cluster.wait_for_nodes()


def ray_problem() -> str | None:
    try:
        import ray  # noqa: F401
        from ray.cluster_utils import Cluster  # noqa: F401
    except ImportError as exc:
        return f"ray is not installed ({exc}); pip install 'openenv-rl[ray]'"
    if os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
        return "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 must be set before ray is imported"
    return None


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """A head and one more node (1 CPU each, no dashboard, 80 MiB object stores, no usage
    stats), joined by this process. Skips loudly without Ray; fails instead when
    OPENENV_REQUIRE_RAY=1 (CI) says the Ray tests must run."""
    problem = ray_problem()
    if problem is not None:
        if os.environ.get("OPENENV_REQUIRE_RAY") == "1":
            pytest.fail(f"OPENENV_REQUIRE_RAY=1 but {problem}")
        pytest.skip(f"RAY TESTS SKIPPED: {problem}")
    import ray
    from ray.cluster_utils import Cluster

    saved = {key: os.environ.get(key) for key in [*HEALTH_CHECK, "RAY_USAGE_STATS_ENABLED"]}
    os.environ.update(HEALTH_CHECK, RAY_USAGE_STATS_ENABLED="0")
    began = time.perf_counter()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={**NODE_OPTIONS, "include_dashboard": False},
    )
    try:
        cluster.add_node(**NODE_OPTIONS)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        yield RayCluster(cluster, time.perf_counter() - began)
    finally:
        ray.shutdown()
        cluster.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def cluster_processes() -> list[psutil.Process]:
    """This process (the driver) and everything it started: the GCS, the raylets, their
    workers and agents, and the env servers those workers started."""
    me = psutil.Process()
    return [me, *me.children(recursive=True)]


def pid_running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def marked_servers(mark: str) -> list[int]:
    """Pids of live env servers started with ``OPENENV_TEST_MARK=mark`` in their environment,
    wherever they run (a removed node's orphans are no longer our descendants)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if "serve" not in " ".join(process.info["cmdline"] or []):
                continue
            if process.environ().get("OPENENV_TEST_MARK") == mark and (
                process.status() != psutil.STATUS_ZOMBIE
            ):
                found.append(process.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


async def eventually(
    condition: Callable[[], Any], within: float, every: float = 0.1, want: bool = True
) -> bool:
    """Poll ``condition`` (sync, or returning an awaitable) until its truth is ``want`` or
    ``within`` seconds pass; whether it got there."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if bool(value) == want:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every)
