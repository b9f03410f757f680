"""Reading a server's ``/metrics``: over TCP or its unix socket, with its token (needs httpx).

:func:`parse` turns the text into a :class:`Snapshot` of what ``openenv top`` shows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from openenv.endpoint import Endpoint

__all__ = ["SCRAPE_TIMEOUT_S", "Snapshot", "metrics_url", "parse", "scrape"]


def metrics_url(endpoint: Endpoint) -> str:
    """The ``/metrics`` URL of the server at ``endpoint`` (its host part is ignored over a
    unix socket)."""
    parts = urlsplit(endpoint.url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return f"{scheme}://{parts.netloc}/metrics"


#: Seconds a server may take to answer a scrape.
SCRAPE_TIMEOUT_S = 5.0


async def scrape(endpoint: Endpoint) -> str:
    """The server's ``/metrics`` text.

    Raises:
        httpx.HTTPError: the server did not answer, or refused (a wrong token: 401).
    """
    import httpx

    transport = httpx.AsyncHTTPTransport(uds=endpoint.unix_socket)
    headers = {"Authorization": f"Bearer {endpoint.token}"} if endpoint.token else {}
    async with httpx.AsyncClient(transport=transport, timeout=SCRAPE_TIMEOUT_S) as http:
        response = await http.get(metrics_url(endpoint), headers=headers)
    response.raise_for_status()
    return response.text


@dataclass
class Snapshot:
    """One scrape's figures (cumulative ones as the server counts them since it started)."""

    taken: float
    sessions: int = 0
    steps: int = 0
    errors: int = 0
    cpu_seconds: float = 0.0
    memory_bytes: int = 0
    #: Cumulative step-time histogram (of the timed steps: the server samples them): upper
    #: bound in seconds -> steps at or below it.
    step_buckets: dict[float, float] = field(default_factory=dict)


def parse(text: str, taken: float | None = None) -> Snapshot:
    """The :class:`Snapshot` in a ``/metrics`` text (all dialects summed)."""
    from prometheus_client.parser import text_string_to_metric_families

    snapshot = Snapshot(time.monotonic() if taken is None else taken)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, value = sample.name, sample.value
            if name == "openenv_server_sessions":
                snapshot.sessions = int(value)
            elif name == "openenv_server_requests_total" and sample.labels["kind"] == "step":
                snapshot.steps += int(value)
            elif name == "openenv_server_errors_total":
                snapshot.errors += int(value)
            elif name == "process_cpu_seconds_total":
                snapshot.cpu_seconds = value
            elif name == "process_resident_memory_bytes":
                snapshot.memory_bytes = int(value)
            elif name == "openenv_server_step_seconds_bucket":
                bound = float(sample.labels["le"])
                snapshot.step_buckets[bound] = snapshot.step_buckets.get(bound, 0) + value
    return snapshot
