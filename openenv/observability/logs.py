"""One JSON object per log line, for log shippers (``openenv serve --log-format json``).

Each line has ``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``, plus the fields
a record carries as ``extra``: ``session_id``, ``request_id``, ``peer``, ``reason``,
``forked_from``, and ``exception`` (the traceback) when there is one. What the server logs
never holds a token or a fork ticket; as a second line of defence, the secrets the formatter
is given (the server's token) are replaced by ``[redacted]`` wherever they would appear.

:class:`Redact` guards the lines of the libraries under the server (both formats): at debug
level websockets logs every handshake header, ``Authorization`` (token or fork ticket)
included, and a preview of every frame (a fork ticket travels in one).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime

__all__ = ["FIELDS", "JsonFormatter", "Redact"]

#: The ``extra`` fields copied into a line when a record has them.
FIELDS = ("session_id", "request_id", "peer", "reason", "forked_from")


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON.

    Args:
        secrets: strings that must never appear in a line (empty ones are ignored).
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self.secrets = [secret for secret in secrets if secret]

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in FIELDS:
            value = record.__dict__.get(field)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps({key: self._redacted(value) for key, value in entry.items()}, default=str)

    def _redacted(self, value: object) -> object:
        if isinstance(value, str):
            for secret in self.secrets:
                value = value.replace(secret, "[redacted]")
        return value


_PAYLOAD = re.compile(r"[<>] (TEXT|BINARY|CONT) ")
_AUTHORIZATION = re.compile(r"(authorization:\s*\S+\s+)\S+", re.IGNORECASE)


class Redact(logging.Filter):
    """Drops frame previews and masks ``Authorization`` header values in a logger's records."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if _PAYLOAD.match(message):
            return False
        masked = _AUTHORIZATION.sub(r"\1[redacted]", message)
        if masked != message:
            record.msg, record.args = masked, None
        return True
