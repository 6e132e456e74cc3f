"""Templates and the small formatting helpers they use.

Usage::

    return render(request, "runs.html", nav="runs", page=page)

Autoescaping is on for every template: anything a run controls (names, labels, parameters, output, config
errors) reaches the page as text. The only markup built in Python is ``ansi_html``'s, which escapes too.
"""

from __future__ import annotations

import json
import shlex
from datetime import datetime, timezone
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from localagent import __version__
from localagent.api.schedule_models import ScheduleSpec
from localagent.config.units import format_duration
from localagent.server.web.ansi import ansi_html
from localagent.server.web.security import secure

STATE_ORDER = (
    "Scheduled",
    "Submitted",
    "Running",
    "Cancelling",
    "Unknown",
    "Success",
    "Failed",
    "Cancelled",
    "Crashed",
)


def compact_duration(seconds: float | None) -> str:
    """``3.2`` -> ``3.2s``, ``185`` -> ``3m 05s``, ``7380`` -> ``2h 03m``; '' for None."""
    if seconds is None:
        return ""
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s" if whole >= 60 else f"{whole}s"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d {whole % 86400 // 3600:02d}h"


def run_duration(started: datetime | None, ended: datetime | None, now: datetime) -> str:
    if started is None:
        return ""
    return compact_duration(((ended or now) - started).total_seconds())


def utc_time(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return ""
    seconds = (now - value).total_seconds()
    if seconds < 0:
        return "in " + compact_duration(-seconds)
    if seconds < 1:
        return "just now"
    return compact_duration(seconds) + " ago"


def zone_time(value: datetime | None) -> str:
    """A fire time on its zone's wall clock, with the zone's abbreviation (``CEST``) where it has one."""
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S %Z").rstrip()


def schedule_timing(spec: ScheduleSpec) -> str:
    """``cron 30 2 * * *`` or ``every 15m from 2024-01-01T00:07:00+00:00`` (the anchor, when one is given)."""
    if spec.cron is not None:
        return f"cron {spec.cron}"
    anchor = f" from {spec.anchor.isoformat()}" if spec.anchor is not None else ""
    return f"every {format_duration(spec.interval or 0)}{anchor}"


def command_line(command: list[str] | str) -> str:
    """A flow's command as one would type it: a string as is, an argv list shell-quoted."""
    return command if isinstance(command, str) else shlex.join(command)


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


_ENV = Environment(
    loader=PackageLoader("localagent.server.web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters.update(
    command=command_line,
    ansi=ansi_html,
    utc=utc_time,
    duration=compact_duration,
    json=pretty_json,
    zone_time=zone_time,
    timing=schedule_timing,
    span=format_duration,
)
_ENV.globals.update(version=__version__, states=STATE_ORDER, ago=ago, run_duration=run_duration)


def render(request: Request, template: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    svc = request.app.state.services
    context.setdefault("now", datetime.now(timezone.utc))
    context.setdefault("nav", "")
    context.setdefault("error", "")
    body = _ENV.get_template(template).render(request=request, login_enabled=bool(svc.settings.api_keys), **context)
    return secure(HTMLResponse(body, status_code=status_code))  # type: ignore[return-value]
