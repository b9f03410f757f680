"""``openenv ps`` and ``openenv prune``: the managed containers on the local daemon, and the
providers' temp folders."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiodocker

from openenv.exceptions import ProviderError
from openenv.providers.owners import MANAGED_LABEL, POOL_LABEL, owner_alive, owner_pid

__all__ = ["ManagedContainer", "list_managed", "prune"]


@dataclass(frozen=True)
class ManagedContainer:
    """One container an openenv provider started (tokens are never shown)."""

    id: str
    image: str
    state: str
    owner_pid: str
    owner_alive: bool
    pool: str


async def list_managed() -> list[ManagedContainer]:
    """Every container labelled ``openenv.managed=1``, running or not.

    Raises:
        ProviderError: no Docker daemon answers.
    """
    try:
        async with aiodocker.Docker() as docker:
            labelled = {"label": [f"{MANAGED_LABEL}=1"]}
            found = await docker.containers.list(all=True, filters=labelled)
            infos = await asyncio.gather(*(container.show() for container in found))
    except (aiodocker.DockerError, OSError, ValueError) as exc:
        raise ProviderError(f"cannot list containers: no Docker daemon answers ({exc})") from exc
    rows = []
    for info in infos:
        labels = info["Config"].get("Labels") or {}
        rows.append(
            ManagedContainer(
                id=info["Id"],
                image=info["Config"].get("Image", "?"),
                state=info["State"].get("Status", "?"),
                owner_pid=owner_pid(labels),
                owner_alive=owner_alive(labels),
                pool=labels.get(POOL_LABEL, ""),
            )
        )
    return rows


async def prune(everything: bool = False, pool_prefix: str = "") -> list[str]:
    """Remove the managed containers whose owner is gone (or all of them), of the pools whose
    id starts with ``pool_prefix``; returns their ids."""
    doomed = [
        row.id
        for row in await list_managed()
        if row.pool.startswith(pool_prefix) and (everything or not row.owner_alive)
    ]
    async with aiodocker.Docker() as docker:
        await asyncio.gather(
            *(docker.containers.container(i).delete(force=True) for i in doomed),
            return_exceptions=True,
        )
    return doomed
