"""``localagent flow schedule``: list schedules with their next fire times; pause and resume them.

Also the ``--cron/--interval/...`` flags of ``flow register`` turned into schedule specs.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from localagent.cli.common import (
    DEFAULT_API_URL,
    ApiKeyOption,
    ApiUrlOption,
    JsonOption,
    api_client,
    print_json,
    print_table,
)

if TYPE_CHECKING:
    from localagent.api.schedule_models import Schedule, ScheduleSpec

app = typer.Typer(no_args_is_help=True, help="List, pause and resume the schedules of flows.")

SCHEDULE_FLAGS = {
    "cron": "--cron",
    "interval": "--interval",
    "timezone": "--timezone",
    "anchor": "--anchor",
    "overlap": "--overlap",
    "catchup": "--catchup",
    "deadline": "--deadline",
    "jitter": "--jitter",
}


class OverlapChoice(str, Enum):
    ALLOW = "allow"
    SKIP = "skip"
    CANCEL_PREVIOUS = "cancel_previous"
    QUEUE = "queue"


class CatchupChoice(str, Enum):
    LATEST = "latest"
    ALL = "all"
    NONE = "none"


def schedule_specs(
    crons: list[str],
    intervals: list[str],
    common: dict[str, Any],
) -> list[dict[str, Any]]:
    """One schedule body per ``--cron`` and ``--interval``, each with the shared options in ``common``."""
    shared = {key: value for key, value in common.items() if value is not None}
    return [{"cron": cron, **shared} for cron in crons] + [{"interval": every, **shared} for every in intervals]


def describe_specs(specs: list[ScheduleSpec]) -> str:
    """``night: cron 30 2 * * * (Europe/Berlin); 2: every 15m (UTC)``, or ``-`` for none."""
    parts = [f"{spec.name}: {describe_spec(spec)} ({spec.timezone})" for spec in specs]
    return "; ".join(parts) + " (see `flow schedule ls`)" if parts else "-"


def describe_timing(schedule: Schedule) -> str:
    return describe_spec(schedule.spec)


def describe_spec(spec: ScheduleSpec) -> str:
    if spec.cron is not None:
        return f"cron {spec.cron}"
    from localagent.config.units import format_duration

    anchor = f" from {spec.anchor.isoformat()}" if spec.anchor is not None else ""
    return f"every {format_duration(spec.interval or 0)}{anchor}"


def _zone_time(moment: datetime, zone_name: str) -> str:
    """``moment`` on the wall clock of the IANA zone, with its abbreviation (``CEST``) where it has one."""
    from localagent.api.cron import parse_zone

    with suppress(ValueError):  # a zone this machine does not know: keep the offset the server sent
        moment = moment.astimezone(parse_zone(zone_name))
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z")


@app.command("ls")
def list_schedules(
    flow: Annotated[str | None, typer.Argument(help="Only this flow's schedules.")] = None,
    as_json: JsonOption = False,
    api: ApiUrlOption = DEFAULT_API_URL,
    key: ApiKeyOption = None,
) -> None:
    """List schedules, then the next five fire times of each in its time zone and in UTC.

    Example: `localagent flow schedule ls nightly-report`
    """
    with api_client(api, key) as client:
        schedules = client.list_schedules(flow)
    if as_json:
        print_json(schedules)
        return
    print_table(
        ["SCHEDULE", "WHEN", "TIME ZONE", "OVERLAP", "CATCH-UP", "STATE"],
        (
            [
                schedule.id,
                describe_timing(schedule),
                schedule.spec.timezone,
                schedule.spec.overlap.value,
                schedule.spec.catchup.value,
                "paused" if schedule.paused else "active",
            ]
            for schedule in schedules
        ),
    )
    rows = [
        [schedule.id, _zone_time(local, schedule.spec.timezone), utc.strftime("%Y-%m-%d %H:%M:%S UTC")]
        for schedule in schedules
        for local, utc in zip(schedule.next_times_local, schedule.next_times, strict=True)
    ]
    if rows:
        typer.echo("")
        print_table(["SCHEDULE", "NEXT (SCHEDULE'S ZONE)", "NEXT (UTC)"], rows)


def _set_paused(flow: str, name: str | None, paused: bool, as_json: bool, api: str, key: str | None) -> None:
    from localagent.errors import ApiNotFound

    with api_client(api, key) as client:
        names = [name] if name else [schedule.name for schedule in client.list_schedules(flow)]
        if not names:
            raise ApiNotFound(404, f"flow {flow!r} has no schedules")
        changed = [client.set_schedule_paused(flow, each, paused) for each in names]
    if as_json:
        print_json(changed)
        return
    for schedule in changed:
        if paused:
            typer.echo(f"paused schedule {schedule.id}")
        else:
            following = (
                _zone_time(schedule.next_times_local[0], schedule.spec.timezone) if schedule.next_times_local else "-"
            )
            typer.echo(f"resumed schedule {schedule.id}; next run at {following}")


FlowArgument = Annotated[str, typer.Argument(help="Flow name.")]
NameArgument = Annotated[str | None, typer.Argument(help="Schedule name (see `flow schedule ls`); default: all.")]


@app.command("pause")
def pause(
    flow: FlowArgument,
    name: NameArgument = None,
    as_json: JsonOption = False,
    api: ApiUrlOption = DEFAULT_API_URL,
    key: ApiKeyOption = None,
) -> None:
    """Pause a flow's schedule (all of them without NAME): no run is made until it is resumed.

    Example: `localagent flow schedule pause nightly-report`
    """
    _set_paused(flow, name, True, as_json, api, key)


@app.command("resume")
def resume(
    flow: FlowArgument,
    name: NameArgument = None,
    as_json: JsonOption = False,
    api: ApiUrlOption = DEFAULT_API_URL,
    key: ApiKeyOption = None,
) -> None:
    """Resume a paused schedule from its next fire time (times passed while paused are not caught up).

    Example: `localagent flow schedule resume nightly-report 1`
    """
    _set_paused(flow, name, False, as_json, api, key)
