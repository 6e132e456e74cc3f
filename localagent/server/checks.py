"""Checks on request values that the wire models allow but the server cannot honour (422 naming the field)."""

from __future__ import annotations

from datetime import datetime, timezone

from localagent.api.models import StateUpdate
from localagent.errors import ApiRejected

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
MAX_DELAY_SECONDS = 10 * 366 * 24 * 3600.0


def bad_request(field: str, message: str) -> ApiRejected:
    return ApiRejected(422, f"{field}: {message}")


def utc(value: datetime, field: str) -> datetime:
    """``value`` in UTC (naive is taken as UTC); a time that cannot be expressed in UTC is refused."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    try:
        converted = value.astimezone(timezone.utc)
        converted.timestamp()
    except (OverflowError, ValueError) as exc:
        raise bad_request(field, f"time out of range ({exc})") from exc
    if converted.year < 2 or converted.year > 9998:
        raise bad_request(field, "time must be between the years 2 and 9998")
    return converted


def int64(value: int | None, field: str) -> int | None:
    if value is not None and not INT64_MIN <= value <= INT64_MAX:
        raise bad_request(field, "integer out of range")
    return value


def delay(value: float | None, field: str) -> None:
    if value is not None and value > MAX_DELAY_SECONDS:
        raise bad_request(field, "must be at most 10 years")


def state_numbers(update: StateUpdate, field: str = "body") -> None:
    """A state update's pid and exit code fit the database's 64-bit integers (422 naming the field)."""
    int64(update.pid, f"{field}.pid")
    int64(update.exit_code, f"{field}.exit_code")
