"""``openenv ps --ray`` and ``openenv prune --ray``: env servers across a Ray cluster.

What they cover, and what not:

- ``ps`` lists every live env-host actor of any RayProvider in the cluster (they are named
  actors in the ``openenv`` namespace) and asks each for its servers: node, provider, backend,
  each server's id, address and liveness. A host that does not answer is listed as such.
- ``prune`` runs, on every live node, the local clean-up of ``openenv prune``: the providers'
  temp folders whose owner process is gone (process servers that died with their env-host
  leave theirs), and the containers env-hosts started (pool ``ray-…``) whose owner is gone (an
  env-host killed by SIGKILL cannot remove its containers; process servers exit with their
  host). With ``everything``, it first ends every env-host actor of the
  cluster, and their servers with them, whoever owns them, then removes all such containers.
- Env servers started outside Ray (``LocalProcessProvider`` on some node) are not seen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import ray
from ray.exceptions import RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from openenv.providers.ray import HOST_NAME_PREFIX, NAMESPACE, POOL_PREFIX

__all__ = ["HostRow", "PruneReport", "host_metrics", "list_hosts", "prune_cluster"]

_ANSWER_S = 15.0
_nodes: Callable[[], list[dict[str, Any]]] = ray.nodes  # typed here; Ray leaves it untyped


@dataclass(frozen=True)
class HostRow:
    """One env-host actor and what it runs (``info`` is None if it did not answer)."""

    name: str
    provider: str
    node_id: str
    info: dict[str, Any] | None


@dataclass
class PruneReport:
    """What ``prune_cluster`` did: hosts ended, and containers removed by node."""

    hosts_killed: list[str] = field(default_factory=list)
    containers: dict[str, list[str]] = field(default_factory=dict)
    folders: dict[str, list[str]] = field(default_factory=dict)
    unreachable: list[str] = field(default_factory=list)


def connect(address: str | None) -> None:
    """Join the cluster at ``address`` (default: ``RAY_ADDRESS`` or the local one)."""
    if not ray.is_initialized():
        ray.init(address=address or "auto", log_to_driver=False, logging_level=logging.WARNING)


def _host_names() -> list[str]:
    return sorted(
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor.get("namespace") == NAMESPACE and actor["name"].startswith(f"{HOST_NAME_PREFIX}:")
    )


def list_hosts(address: str | None = None) -> list[HostRow]:
    """Every env-host actor of the cluster, with its servers."""
    connect(address)
    rows = []
    for name in _host_names():
        _, provider, node_id, _ = name.split(":")
        info: dict[str, Any] | None
        try:
            actor = ray.get_actor(name, namespace=NAMESPACE)
            info = cast("dict[str, Any]", ray.get(actor.info.remote(), timeout=_ANSWER_S))
        except (RayError, ValueError):
            info = None  # died meanwhile, or its node is gone
        rows.append(HostRow(name, provider, node_id, info))
    return rows


def host_metrics(address: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Every server of every env-host actor, scraped by its host: ``(host name, row)`` with
    the row's ``id``, ``address`` and ``text`` (or ``error``)."""
    connect(address)
    rows: list[tuple[str, dict[str, Any]]] = []
    for name in _host_names():
        try:
            actor = ray.get_actor(name, namespace=NAMESPACE)
            scraped: list[dict[str, Any]] = ray.get(actor.metrics.remote(), timeout=_ANSWER_S)
        except (RayError, ValueError) as exc:
            rows.append((name, {"id": "?", "address": "?", "error": f"host: {exc}"}))
            continue
        rows.extend((name, row) for row in scraped)
    return rows


def _prune_node(everything: bool) -> tuple[list[str], list[str]]:
    """Runs on one node: the temp folders whose owner is gone (servers that died with their
    env-host leave theirs), and env-hosts' containers where Docker answers."""
    import asyncio

    from openenv.providers.owners import prune_folders

    folders = [str(folder) for folder in prune_folders()]
    try:
        from openenv.providers.housekeeping import prune
    except ImportError:  # no aiodocker on this node: no containers of ours either
        return [], folders
    try:
        return asyncio.run(prune(everything=everything, pool_prefix=POOL_PREFIX)), folders
    except Exception:  # no daemon on this node is no error for a cluster sweep
        return [], folders


def prune_cluster(address: str | None = None, everything: bool = False) -> PruneReport:
    """Remove orphaned containers on every node; with ``everything``, end every env-host
    actor of the cluster first (their servers die with them)."""
    connect(address)
    report = PruneReport()
    if everything:
        for name in _host_names():
            try:
                actor = ray.get_actor(name, namespace=NAMESPACE)
                ray.get(actor.close.remote(), timeout=_ANSWER_S)
            except (RayError, ValueError):
                pass  # it cannot stop its servers: killing it below still ends process ones
            try:
                ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
                report.hosts_killed.append(name)
            except (RayError, ValueError):
                pass  # gone already
    task = ray.remote(_prune_node)
    pending = {}
    for node in _nodes():
        if node.get("Alive"):
            strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            pending[node["NodeID"]] = task.options(num_cpus=0, scheduling_strategy=strategy).remote(
                everything
            )
    for node_id, ref in pending.items():
        try:
            answer = ray.get(ref, timeout=_ANSWER_S * 4)
        except RayError:
            report.unreachable.append(node_id)
            continue
        removed, folders = answer
        if removed:
            report.containers[node_id] = removed
        if folders:
            report.folders[node_id] = folders
    return report
