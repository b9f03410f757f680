"""OpenTelemetry spans for env calls, when the application configures an SDK.

openenv uses ``opentelemetry-api`` only. :func:`tracer` answers None while no SDK tracer
provider is set (or the API is not installed), and the callers then skip tracing altogether:
no span objects, no context on the wire, nothing per step. A client asks when it is made, a
server session when it opens: configure the SDK before either.

The client's span of a request travels to the server as the request's ``trace`` field (a W3C
trace context, written by the configured propagator), and the server's span of that request
is its child: one step, one trace.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

try:
    from opentelemetry import propagate, trace
    from opentelemetry.context import Context
except ImportError:  # tracing is an optional extra
    trace = None  # type: ignore[assignment]

__all__ = ["CLIENT", "SERVER", "carrier", "ending", "parent", "tracer"]

T = TypeVar("T")

CLIENT: Any = trace.SpanKind.CLIENT if trace is not None else None
SERVER: Any = trace.SpanKind.SERVER if trace is not None else None


def tracer(name: str) -> Any:
    """The tracer ``name`` of the configured SDK, or None when spans would go nowhere."""
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return provider.get_tracer(name)


def carrier() -> dict[str, str]:
    """The current span's context as the propagator writes it (``traceparent``, ...)."""
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


def parent(headers: Mapping[str, str] | None) -> Context | None:
    """The context a request's ``trace`` field names, to parent the server's span (None:
    the request carried none)."""
    if not headers:
        return None
    return propagate.extract(dict(headers))


async def ending(reply: Awaitable[T], span: Any) -> T:
    """``await reply``, then end ``span`` (for a reply that is not ready at once)."""
    try:
        return await reply
    except BaseException as exc:
        span.record_exception(exc)
        raise
    finally:
        span.end()
