"""Which env servers the providers of this machine run, for ``openenv top``.

A provider writes ``server.json`` (kind, id, address, token; mode 0600) into the server's
private temp folder (``openenv-*``, mode 0700, removed with the server), so only the user who
started a server can find it and read its token. Servers whose owner process is gone are
skipped (``openenv prune`` removes them).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from openenv.endpoint import Endpoint
from openenv.providers.base import ServerHandle
from openenv.providers.owners import FOLDER_PREFIX, folder_labels, owner_alive

__all__ = ["ListedServer", "local_servers", "record_server"]

_FILE = "server.json"


@dataclass(frozen=True)
class ListedServer:
    """A server found in a provider's temp folder (the token is never shown)."""

    kind: str
    id: str
    endpoint: Endpoint = field(repr=False)

    @property
    def address(self) -> str:
        return str(self.endpoint)


def record_server(folder: Path, kind: str, server: ServerHandle) -> None:
    """Write ``server``'s address and token into its temp folder, readable by its user only."""
    data = {
        "kind": kind,
        "id": server.id,
        "address": str(server.endpoint),
        "token": server.endpoint.token,
    }
    path = folder / _FILE
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(data, out)


def local_servers(root: Path | None = None) -> list[ListedServer]:
    """Every server a live provider of this machine recorded, by kind then id."""
    found = []
    for folder in sorted((root or Path(tempfile.gettempdir())).glob(f"{FOLDER_PREFIX}*")):
        labels = folder_labels(folder)
        try:
            data = json.loads((folder / _FILE).read_text())
            endpoint = Endpoint.parse(data["address"], data.get("token"))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a server's folder, not ours, or half written
        if labels is not None and owner_alive(labels):
            found.append(ListedServer(str(data.get("kind", "?")), str(data["id"]), endpoint))
    return sorted(found, key=lambda server: (server.kind, server.id))
