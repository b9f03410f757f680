"""``EnvHost``: what :class:`~openenv.providers.ray.RayProvider` runs on each node, as a Ray actor.

One env-host per node and provider wraps a local provider (processes or containers) on its node:
it starts, watches and stops env servers there and hands back their endpoints; it never carries
a session's traffic. Its servers die with it: a process server watches its stdin, a pipe from
this actor's process, and exits when the actor's process is gone, whatever killed it (``ray.kill``,
its owner's death, its node's death; Ray also kills a worker's children when the worker exits).
Containers watch no one: ``close`` removes them, so does the Docker provider's exit hook when
the actor's process exits (seen after ``ray.kill``, within ~5 s); a host SIGKILLed (the OOM
killer) leaves them to ``openenv prune --ray``. A watcher process would not help: Ray kills a
worker's child processes with it.

This module does not import Ray: the provider wraps the class with ``ray.remote``.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from openenv.exceptions import ProviderError
from openenv.providers.base import Provider, ServerHandle

__all__ = ["EnvHost", "local_provider"]


def local_provider(backend: str, target: str, host: str, options: dict[str, Any]) -> Provider:
    """The local provider an env-host wraps: tcp servers on ``host``, the node's address."""
    if backend == "process":
        from openenv.providers.process import LocalProcessProvider

        return LocalProcessProvider(target, transport="tcp", host=host, **options)
    if backend == "docker":
        from openenv.providers.docker import LocalDockerProvider

        return LocalDockerProvider(target, transport="tcp", host=host, **options)
    raise ValueError(f"backend must be 'process' or 'docker', not {backend!r}")


class EnvHost:
    """Runs env servers of one provider on one node (the body of a Ray actor).

    Args:
        backend: ``"process"`` or ``"docker"``.
        target: the app (process) or image (docker) to serve.
        host: the node's address; servers bind it.
        options: keyword arguments of the local provider.
        node_id: the Ray node this actor is pinned to (shown by ``openenv ps``).
        niceness: the scheduling niceness process servers start with (None: Ray's worker
            niceness, which they would otherwise inherit).
    """

    def __init__(
        self,
        backend: str,
        target: str,
        host: str,
        options: dict[str, Any],
        node_id: str,
        niceness: int | None = 0,
    ) -> None:
        self._provider = local_provider(backend, target, host, options)
        self._backend = backend
        self._target = target
        self._node_id = node_id
        self._niceness = niceness
        self._servers: dict[str, ServerHandle] = {}

    async def start(self) -> ServerHandle:
        """Start one server on this node; its id is local to the node."""
        _renice(self._niceness)
        server = await self._provider.start()
        self._servers[server.id] = server
        return server

    async def stop(self, server_id: str) -> None:
        """Stop one server (nothing if unknown or stopped)."""
        server = self._servers.pop(server_id, None)
        if server is not None:
            await self._provider.stop(server)

    async def kill(self, server_id: str) -> None:
        """SIGKILL one server, as a crash would."""
        server = self._servers.get(server_id)
        if server is None:
            raise ProviderError(f"no server {server_id} on node {self._node_id[:12]}")
        await self._provider.kill(server)

    async def is_alive(self, server_id: str) -> bool:
        """Whether the server still runs."""
        server = self._servers.get(server_id)
        return server is not None and await self._provider.is_alive(server)

    async def close(self) -> None:
        """Stop every server of this host."""
        self._servers.clear()
        await self._provider.close()

    async def metrics(self) -> list[dict[str, Any]]:
        """Each server's ``/metrics`` text (or why not), scraped here on its node, for
        ``openenv top --ray``: its address may be a unix socket no other node reaches."""
        return list(await asyncio.gather(*map(_scraped, list(self._servers.values()))))

    async def info(self) -> dict[str, Any]:
        """This host and its servers, for ``openenv ps``: node, pid, backend, target and each
        server's id, address and liveness (tokens left out)."""
        servers = []
        for server in list(self._servers.values()):
            alive = await self._provider.is_alive(server)
            servers.append({"id": server.id, "address": str(server.endpoint), "alive": alive})
        return {
            "node_id": self._node_id,
            "pid": os.getpid(),
            "backend": self._backend,
            "target": self._target,
            "niceness": os.getpriority(os.PRIO_PROCESS, 0),
            "servers": servers,
        }


async def _scraped(server: ServerHandle) -> dict[str, Any]:
    from openenv.observability.scrape import scrape

    row: dict[str, Any] = {"id": server.id, "address": str(server.endpoint)}
    try:
        row["text"] = await scrape(server.endpoint)
    except Exception as exc:  # any failure is shown in its row; the others still count
        row["error"] = f"{type(exc).__name__}: {exc}"
    return row


def _renice(niceness: int | None) -> None:
    """Give the calling thread, and so the servers it forks, ``niceness``.

    Ray runs its workers at niceness 15 (``RAY_worker_niceness``) and a server started here
    would inherit it: on a busy node, the env servers would then lose the CPU to everything
    else, the trainer included (measured: ~0.6-0.8x the steps/s of the same servers at 0).
    Niceness is per thread on Linux, and servers are forked from the actor's event-loop
    thread, so this runs there. Lowering it needs CAP_SYS_NICE; without it they keep Ray's.
    """
    if niceness is None or not hasattr(os, "setpriority"):
        return
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) != niceness:
            os.setpriority(os.PRIO_PROCESS, 0, niceness)
    except PermissionError:
        pass
