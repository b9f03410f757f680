"""``RayProvider``: env servers on the nodes of a Ray cluster, for trainers that already run on one.

One env-host actor per node (:mod:`openenv.providers.ray_host`, ``num_cpus=0``, pinned to its
node) wraps a local provider there: ``backend="process"`` (LocalProcessProvider) or
``backend="docker"`` (LocalDockerProvider with its sandbox defaults). New servers go to the
live node with the fewest servers of this provider. Ray only places, starts, watches and stops
servers: each actor hands back its server's endpoint (the node's address, a port, a token) and
clients connect straight to it, so no session's traffic goes through Ray.

Failure model: a dead node's actor and servers die with it; ``is_alive``/``stop``/``close``
treat an actor Ray reports dead, or one that does not answer within ``call_timeout``, as a node
whose servers are gone, and ``start`` tries another node before raising ``ProviderError``.
How soon Ray reports a dead node is its health check's business (``RAY_health_check_*``).
Nothing is left behind: servers die with their actor (they watch its process), actors are
killed by ``close`` and, being owned by the process that made them, by Ray when that process
dies, even by SIGKILL.

Needs the ``ray`` extra: ``pip install 'openenv-rl[ray]'``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

try:
    import ray
    from ray.exceptions import RayError, RayTaskError
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(f"RayProvider needs Ray: pip install 'openenv-rl[ray]' ({exc})") from exc

from openenv.cleanup import run_to_completion
from openenv.exceptions import ProviderError
from openenv.providers.base import Provider, ServerHandle
from openenv.providers.ray_host import EnvHost

__all__ = ["HOST_NAME_PREFIX", "NAMESPACE", "POOL_PREFIX", "RayProvider"]

NAMESPACE = "openenv"
HOST_NAME_PREFIX = "openenv-host"
POOL_PREFIX = "ray-"  # of the docker pool label of containers started by env-hosts
_NODES_TTL_S = 0.5  # how long one ray.nodes() answer serves placement decisions
_START_MARGIN_S = 30.0  # beyond the local start-up timeout, for placing the actor itself
_HOSTS_PER_NODE = 3  # env-hosts made for one node before it is given up on

T = TypeVar("T")


@dataclass(eq=False)
class _Host:
    """This provider's env-host actor on one node."""

    node_id: str
    actor: Any
    generation: int
    servers: set[str] = field(default_factory=set)
    starting: int = 0
    gone: bool = False

    @property
    def load(self) -> int:
        return len(self.servers) + self.starting


@dataclass(frozen=True)
class _Placed:
    host: _Host
    local_id: str
    handle: ServerHandle


class _HostGone(Exception):
    """The actor died, its node died, or it did not answer in time."""


class RayProvider(Provider):
    """Starts env servers on the nodes of a Ray cluster, one env-host actor per node.

    Args:
        target: what to serve: an app (``"envs.echo_env"``) for the process backend, an image
            (``"echo-env:latest"``) for the docker backend.
        backend: ``"process"`` or ``"docker"``.
        address: the cluster to join when this process has not joined one yet (``ray.init``'s
            address; default ``"auto"``: ``RAY_ADDRESS`` or the cluster started on this
            machine). Never starts a cluster.
        node_resource: only use nodes that have this custom resource (e.g. ``"env_host"``
            from ``ray start --resources='{"env_host": 1}'``); the resource is not consumed.
        node_labels: only use nodes carrying all these labels.
        max_servers_per_node: servers this provider may run on one node (default: no limit).
        start_attempts: nodes ``start`` tries before it gives up.
        call_timeout: seconds an env-host may take to answer a call other than ``start``;
            one that does not answer is treated as dead.
        server_niceness: niceness of process servers (default 0, as if started by hand; Ray
            runs its workers at 15 and servers would inherit that; lowering it needs
            CAP_SYS_NICE on the node, else they keep Ray's). None leaves Ray's.
        **local_options: keyword arguments of the local provider on each node (``env``,
            ``auth``, ``startup_timeout``; ``memory``, ``cpus``… for docker). Servers always
            use tcp on their node's address.
    """

    def __init__(
        self,
        target: str,
        *,
        backend: Literal["process", "docker"] = "process",
        address: str | None = None,
        node_resource: str | None = None,
        node_labels: Mapping[str, str] | None = None,
        max_servers_per_node: int | None = None,
        start_attempts: int = 3,
        call_timeout: float = 30.0,
        server_niceness: int | None = 0,
        **local_options: Any,
    ) -> None:
        if backend not in ("process", "docker"):
            raise ValueError(f"backend must be 'process' or 'docker', not {backend!r}")
        if max_servers_per_node is not None and max_servers_per_node < 1:
            raise ValueError("max_servers_per_node must be at least 1")
        if start_attempts < 1:
            raise ValueError("start_attempts must be at least 1")
        for fixed in ("transport", "host"):
            if fixed in local_options:
                raise ValueError(f"{fixed} is set by RayProvider: tcp on each node's address")
        self.target = target
        self.backend = backend
        self.address = address
        self.node_resource = node_resource
        self.node_labels = dict(node_labels or {})
        self.max_servers_per_node = max_servers_per_node
        self.start_attempts = start_attempts
        self.call_timeout = call_timeout
        self.server_niceness = server_niceness
        self.id = uuid.uuid4().hex[:12]
        if backend == "docker":  # `openenv ps` shows whose they are, `prune --ray` finds them
            local_options.setdefault("pool", f"{POOL_PREFIX}{self.id}")
        self.local_options = local_options
        self._start_timeout = float(local_options.get("startup_timeout", 30.0)) + _START_MARGIN_S
        self._hosts: dict[str, _Host] = {}  # the current one of each node
        self._every_host: list[_Host] = []  # for close: replaced ones may still run
        self._servers: dict[str, _Placed] = {}
        self._nodes: asyncio.Future[list[dict[str, Any]]] | None = None
        self._nodes_at = 0.0

    # Provider interface.

    async def start(self) -> ServerHandle:
        self._connect()
        tried: set[str] = set()
        failures: list[str] = []
        for _ in range(self.start_attempts):
            host = await self._pick_host(tried)
            if host is None:
                break
            tried.add(host.node_id)
            host.starting += 1
            try:
                local: ServerHandle = await self._call(
                    host, host.actor.start.remote(), self._start_timeout
                )
            except (_HostGone, ProviderError) as exc:
                failures.append(f"node {host.node_id[:12]}: {exc}")
                continue
            finally:
                host.starting -= 1
            handle = ServerHandle(f"{host.node_id[:12]}/{local.id}", local.endpoint)
            host.servers.add(local.id)
            self._servers[handle.id] = _Placed(host, local.id, handle)
            return handle
        if not failures:
            raise ProviderError(self._why_no_node())
        raise ProviderError(
            f"could not start {self.target} on {len(failures)} node(s): " + "; ".join(failures)
        )

    async def stop(self, server: ServerHandle) -> None:
        placed = self._servers.pop(server.id, None)
        if placed is None:
            return
        placed.host.servers.discard(placed.local_id)
        try:
            await self._call(placed.host, placed.host.actor.stop.remote(placed.local_id))
        except _HostGone:
            pass  # its servers died with it

    async def is_alive(self, server: ServerHandle) -> bool:
        placed = self._servers.get(server.id)
        if placed is None:
            return False
        try:
            alive: bool = await self._call(
                placed.host, placed.host.actor.is_alive.remote(placed.local_id)
            )
        except _HostGone:
            return False
        return alive

    def running(self) -> list[ServerHandle]:
        return [placed.handle for placed in self._servers.values()]

    async def kill(self, server: ServerHandle) -> None:
        placed = self._servers.get(server.id)
        if placed is None:
            return
        try:
            await self._call(placed.host, placed.host.actor.kill.remote(placed.local_id))
        except _HostGone:
            pass  # dead already

    async def close(self) -> None:
        """Stop every server, then end every env-host actor, even if cancelled meanwhile."""
        try:
            await super().close()
        finally:
            await run_to_completion(self._end_hosts())

    def node_of(self, server: ServerHandle) -> str:
        """The id of the Ray node ``server`` runs on.

        Raises:
            KeyError: ``server`` is not one of this provider's running servers.
        """
        return self._servers[server.id].host.node_id

    # Placement.

    def _connect(self) -> None:
        """Join the cluster unless this process has already (a trainer on Ray has)."""
        if ray.is_initialized():
            return
        address = self.address or "auto"
        try:
            ray.init(address=address)
        except ConnectionError as exc:
            raise ProviderError(f"cannot join the Ray cluster at {address!r}: {exc}") from exc

    async def _pick_host(self, tried: set[str]) -> _Host | None:
        """The live eligible node with the fewest servers of ours, its actor made if need be."""
        nodes = {node["NodeID"]: node for node in await self._eligible_nodes()}
        candidates, revivable = [], []
        for node_id, node in nodes.items():
            host = self._hosts.get(node_id)
            if host is None:
                host = self._new_host(node, None)
            if node_id in tried:
                continue
            if host.gone:
                if host.generation < _HOSTS_PER_NODE:
                    revivable.append((node, host))
                continue
            if self.max_servers_per_node is not None and host.load >= self.max_servers_per_node:
                continue
            candidates.append(host)
        if not candidates and revivable:
            # A node whose env-host died may itself be dead without Ray knowing yet (it takes
            # the health check's time): a new env-host there would wait that long to fail. So
            # only when no other node can take the server, and a few times per node.
            candidates.append(self._new_host(*revivable[0]))
        return min(candidates, key=lambda host: host.load, default=None)

    def _new_host(self, node: Mapping[str, Any], previous: _Host | None) -> _Host:
        host = self._hosts[node["NodeID"]] = self._make_host(node, previous)
        self._every_host.append(host)
        return host

    async def _eligible_nodes(self) -> list[dict[str, Any]]:
        """Alive nodes with the resource and labels asked for (ray.nodes(), cached briefly)."""
        if self._nodes is None or time.monotonic() - self._nodes_at > _NODES_TTL_S:
            self._nodes_at = time.monotonic()
            self._nodes = asyncio.ensure_future(asyncio.to_thread(ray.nodes))
        nodes = await asyncio.shield(self._nodes)
        return [node for node in nodes if self._eligible(node)]

    def _eligible(self, node: Mapping[str, Any]) -> bool:
        if not node.get("Alive"):
            return False
        if self.node_resource and not node.get("Resources", {}).get(self.node_resource):
            return False
        labels = node.get("Labels") or {}
        return all(labels.get(key) == value for key, value in self.node_labels.items())

    def _make_host(self, node: Mapping[str, Any], previous: _Host | None) -> _Host:
        node_id = node["NodeID"]
        generation = 1 if previous is None else previous.generation + 1
        actor = (
            ray.remote(EnvHost)
            .options(
                num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                name=f"{HOST_NAME_PREFIX}:{self.id}:{node_id}:{generation}",
                namespace=NAMESPACE,
                max_restarts=0,
            )
            .remote(
                self.backend,
                self.target,
                node["NodeManagerAddress"],
                self.local_options,
                node_id,
                self.server_niceness,
            )
        )
        return _Host(node_id, actor, generation)

    def _why_no_node(self) -> str:
        wanted = []
        if self.node_resource:
            wanted.append(f"resource {self.node_resource!r}")
        if self.node_labels:
            wanted.append(f"labels {self.node_labels}")
        if self.max_servers_per_node is not None:
            wanted.append(f"fewer than {self.max_servers_per_node} servers of this provider")
        condition = " with " + " and ".join(wanted) if wanted else ""
        return f"no live Ray node{condition} can take a server of {self.target}"

    # Calls to env-hosts.

    async def _call(self, host: _Host, ref: Awaitable[T], within: float | None = None) -> T:
        """Await an env-host's answer (within ``within`` s, default ``call_timeout``). Its own
        errors come back as ``ProviderError``; a host that died or does not answer in time is
        marked gone and raises ``_HostGone``."""
        if host.gone:
            raise _HostGone("its env-host is gone")
        within = within or self.call_timeout
        try:
            return await asyncio.wait_for(_resolve(ref), within)
        except RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, Exception) else exc
            if isinstance(cause, ProviderError):
                raise ProviderError(str(cause)) from None
            raise ProviderError(f"{type(cause).__name__}: {cause}") from None
        except RayError as exc:
            host.gone = True
            raise _HostGone(f"{type(exc).__name__}: {_first_line(exc)}") from exc
        except TimeoutError:
            host.gone = True
            raise _HostGone(f"no answer within {within} s") from None

    async def _end_hosts(self) -> None:
        hosts = self._every_host
        self._hosts, self._every_host = {}, []
        live = [host for host in hosts if not host.gone]
        # Docker containers do not watch their host: ask each host to stop what it runs.
        await asyncio.gather(
            *(self._call(host, host.actor.close.remote()) for host in live),
            return_exceptions=True,
        )
        for host in hosts:
            try:
                ray.kill(host.actor, no_restart=True)
            except (RayError, ValueError):
                pass  # already gone


async def _resolve(ref: Awaitable[T]) -> T:
    return await ref


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]
