"""Log line formats: ``text`` for people, ``json`` (one object per line) for machines.

``BACKCHANNEL_LOG_FORMAT=json`` writes each record as a JSON object with
``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``message`` and, for request
lines (logger ``backchannel.access``), ``method``, ``route``, ``status``,
``duration_ms`` and ``request_id``. An exception adds ``exc_info``.
"""

from __future__ import annotations

import datetime
import json
import logging

REQUEST_FIELDS = ("method", "route", "status", "duration_ms", "request_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in REQUEST_FIELDS:
            if name in record.__dict__:
                line[name] = record.__dict__[name]
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(level: str, fmt: str) -> None:
    """Send every log record to stderr at ``level`` in ``fmt`` (``text`` or ``json``)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
