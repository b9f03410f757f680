"""Who owns a managed container: labels written at start, and whether that owner still lives.

Every container a provider starts carries ``openenv.managed=1``, the owner's pid and start time
(so a recycled pid is not mistaken for the owner) and the pool it belongs to. ``openenv prune``
removes the containers whose owner is gone: the answer to a client killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Mapping
from pathlib import Path

from openenv.procfs import start_time

__all__ = [
    "FOLDER_PREFIX",
    "MANAGED_LABEL",
    "POOL_LABEL",
    "folder_labels",
    "mark_owned",
    "owner_alive",
    "owner_labels",
    "owner_pid",
    "prune_folders",
]

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


_OWNER_FILE = "owner.json"
FOLDER_PREFIX = "openenv-"


def mark_owned(folder: Path, pool: str) -> None:
    """Write this process's owner labels into ``folder`` (a provider's temp folder), so that
    :func:`prune_folders` can tell when it is left over."""
    (folder / _OWNER_FILE).write_text(json.dumps(owner_labels(pool)))


def folder_labels(folder: Path) -> dict[str, str] | None:
    """The owner labels :func:`mark_owned` wrote into ``folder`` (None: none, or unreadable)."""
    try:
        labels = json.loads((folder / _OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return labels if isinstance(labels, dict) else None


def prune_folders(everything: bool = False, root: Path | None = None) -> list[Path]:
    """Remove the providers' temp folders (``openenv-*`` in the temp directory, with an owner
    file) whose owner process is gone, or all of them; returns what was removed."""
    removed = []
    for folder in sorted((root or Path(tempfile.gettempdir())).glob(f"{FOLDER_PREFIX}*")):
        labels = folder_labels(folder)
        if labels is None:
            continue  # not ours, or not readable by us
        if everything or not owner_alive(labels):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
