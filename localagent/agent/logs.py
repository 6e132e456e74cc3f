"""The agent's own log: ``logs.level`` and ``logs.format`` ("text" or "json", one object a line) on stderr.

Usage::

    configure_logging(config.logs)   # at start, and again on every reload (the change applies at once)

Only the ``localagent`` logger tree is configured. Run output (``logs.show_flow_logs``) goes to stdout through
the ConsolePrinter in text format; in JSON format it goes through :func:`write_log_lines` to this same stream,
one object a line, so that everything the agent prints is JSON on one stream.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone
from typing import Any

from localagent.agent.escape import json_line
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
        return json_line(entry)


def _handler() -> logging.Handler | None:
    return next((h for h in logging.getLogger(LOGGER_NAME).handlers if h.get_name() == _HANDLER_NAME), None)


def current_format() -> str:
    """``"json"`` when the agent's log is configured as JSON, else ``"text"``."""
    handler = _handler()
    return "json" if handler is not None and isinstance(handler.formatter, JsonFormatter) else "text"


def write_log_lines(text: str) -> bool:
    """Write ``text`` (whole lines) to the agent's log stream under the handler's lock, so it never lands in
    the middle of a log line; False when logging is not configured (nothing written)."""
    handler = _handler()
    if not isinstance(handler, logging.StreamHandler):
        return False
    handler.acquire()
    try:
        handler.stream.write(text)
        handler.flush()
    finally:
        handler.release()
    return True


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
