"""One JSON log line per request, on the ``povertymap.serve.access`` logger.

Fields: ``ts``, ``level``, ``request_id``, ``method``, ``route`` (the template, never the
raw path, which can carry values), ``status``, ``duration_ms``, ``role``, ``key_id``,
``map``, ``model_version``, ``bytes``, ``client``. Query strings and bodies are never
logged.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

__all__ = ["ACCESS_LOGGER", "JsonFormatter", "access_logger", "log_request"]

ACCESS_LOGGER = "povertymap.serve.access"


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: its ``fields`` plus time, level and message."""

    def format(self, record: logging.LogRecord) -> str:
        """The JSON line."""
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        else:
            out["message"] = record.getMessage()
        return json.dumps(out, default=str, separators=(",", ":"))


def access_logger(stream: Any = None) -> logging.Logger:
    """The access logger, writing JSON lines to ``stream`` (stderr) once configured."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(getattr(h, "_povertymap", False) for h in logger.handlers):
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._povertymap = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def log_request(logger: logging.Logger, fields: dict[str, Any]) -> None:
    """Emit one request's line."""
    logger.info("request", extra={"fields": fields})
