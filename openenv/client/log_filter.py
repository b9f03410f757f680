"""No secrets in a client's logs: websockets' client logger gets the Redact filter.

At DEBUG websockets logs every handshake header the client sends (``Authorization: Bearer
<token>``, or ``Fork <ticket>``) and a preview of every frame (a ``ForkTickets`` reply carries
live tickets). A logger's filters apply to its own records only, wherever a handler sits, so
the filter goes on the logger that makes them; importing :mod:`openenv.client` installs it.
"""

from __future__ import annotations

import logging

from openenv.observability.logs import Redact

__all__ = ["guard"]

LOGGERS = ("websockets.client",)


def guard() -> None:
    """Install the filter (once) on the loggers the client's libraries log secrets to."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, Redact) for existing in logger.filters):
            logger.addFilter(Redact())


guard()
