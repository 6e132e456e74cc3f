"""The agent's own log: ``logs.level`` and ``logs.format`` ("text" or "json", one object a line) on stderr.

Usage::

    configure_logging(config.logs)   # at start, and again on every reload (the change applies at once)

Only the ``localagent`` logger tree is configured; run output goes to stdout through the ConsolePrinter.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

from localagent.config.model import LogsSection

LOGGER_NAME = "localagent"
_HANDLER_NAME = "localagent-agent-log"
_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# LogRecord attributes that are not user "extra" fields.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, any ``extra`` fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter(_TEXT_FORMAT)


def configure_logging(logs: LogsSection, *, stream: Any = None) -> None:
    """Point the ``localagent`` loggers at stderr with ``logs.level`` and ``logs.format``.

    Idempotent: a second call (a reload) replaces the handler's level and formatter in place.
    """
    logger = logging.getLogger(LOGGER_NAME)
    handler = next((h for h in logger.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
        handler.set_name(_HANDLER_NAME)
        logger.addHandler(handler)
    elif stream is not None and isinstance(handler, logging.StreamHandler):
        handler.setStream(stream)
    handler.setFormatter(_formatter(logs.format))
    logger.setLevel(logs.level)
    logger.propagate = False
