"""Cron expressions and time zones as a schedule names them, checked once with a readable error.

Usage::

    expr = parse_cron("@hourly")            # "0 * * * *"; ValueError naming what is wrong
    zone = parse_zone("Europe/Berlin")      # a ZoneInfo; ValueError for an unknown name

The arithmetic is cronsim's (a Debian-cron compatible evaluator, DST rules included); this module only
adds the ``@hourly``-style aliases cronsim leaves out and insists on the five classic fields.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS = ("minute", "hour", "day of month", "month", "day of week")
_PROBE = datetime(2000, 1, 1, tzinfo=timezone.utc)


def parse_cron(text: str) -> str:
    """``text`` as five cron fields (aliases expanded, spaces normalised); ValueError when cron refuses it."""
    expr = " ".join(text.split())
    expanded = ALIASES.get(expr.lower(), expr)
    if expr.startswith("@") and expanded is expr:
        raise ValueError(f"unknown cron alias {expr!r}; use one of {', '.join(sorted(ALIASES))}")
    count = len(expanded.split())
    if count != len(_FIELDS):
        raise ValueError(
            f"a cron expression has 5 fields (minute hour day-of-month month day-of-week), got {count} in {text!r}"
        )
    try:
        CronSim(expanded, _PROBE)
    except (CronSimError, ValueError, IndexError) as exc:
        raise ValueError(f"invalid cron expression {text!r}: {_reason(exc)}") from None
    return expanded


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    # cronsim counts a seconds field first; name the fields as a 5-field crontab does.
    return text.replace("Bad ", "bad ")


@lru_cache(maxsize=512)
def parse_zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ValueError naming it when the system's zone data has no such zone."""
    if not name or name != name.strip() or name.startswith("/") or ".." in name:
        raise ValueError(f"unknown time zone {name!r}; use an IANA name like 'Europe/Berlin' or 'UTC'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r}; use an IANA name like 'Europe/Berlin' or 'UTC'") from None
