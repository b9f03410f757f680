"""Who owns a managed container: labels written at start, and whether that owner still lives.

Every container a provider starts carries ``openenv.managed=1``, the owner's pid and start time
(so a recycled pid is not mistaken for the owner) and the pool it belongs to. ``openenv prune``
removes the containers whose owner is gone: the answer to a client killed with SIGKILL.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path

from openenv.procfs import start_time

__all__ = ["MANAGED_LABEL", "POOL_LABEL", "owner_alive", "owner_labels", "owner_pid"]

MANAGED_LABEL = "openenv.managed"
_PID = "openenv.owner_pid"
_START = "openenv.owner_start"
_HOST = "openenv.owner_host"
POOL_LABEL = "openenv.pool"


def owner_labels(pool: str) -> dict[str, str]:
    """Labels naming this process as the owner of a container of ``pool``."""
    pid = os.getpid()
    return {
        MANAGED_LABEL: "1",
        _PID: str(pid),
        _START: start_time(pid),
        _HOST: socket.gethostname(),
        POOL_LABEL: pool,
    }


def owner_alive(labels: Mapping[str, str]) -> bool:
    """Whether the process named by ``labels`` still runs. Containers of another host's
    processes (a shared daemon) count as alive: we cannot tell, so we never prune them."""
    if labels.get(_HOST, socket.gethostname()) != socket.gethostname():
        return True
    try:
        pid = int(labels.get(_PID, ""))
    except ValueError:
        return False
    if Path("/proc").is_dir():
        start = start_time(pid)
        return bool(start) and start == labels.get(_START, start)
    try:  # no /proc (macOS): existence is all we can check
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def owner_pid(labels: Mapping[str, str]) -> str:
    """The owner's pid as written in the labels."""
    return labels.get(_PID, "?")
