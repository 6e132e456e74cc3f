"""Schedules: kept in step with their flow's latest version, listed with their next fire times, paused, resumed.

Usage::

    store = ScheduleStore(database, clock)
    flows = FlowStore(database, clock, on_register=store.sync)   # each new flow version syncs its schedules
    store.for_flow("nightly")                                     # list[Schedule] with the next five times
    store.set_paused("nightly", "1", True)

A schedule's row holds the spec (JSON), whether it is paused, and ``next_time``: the first fire time not
handled yet. Registering a version whose schedule keeps its timing (cron or interval, anchor, zone) keeps
that ``next_time``, so times missed meanwhile are still caught up; a changed timing starts from now.
Resuming starts from now too: times that passed while paused are not caught up. Pausing, or changing or
removing a schedule, withdraws its runs made ahead for times still to come (see ``scheduler``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from localagent.api.cron import parse_zone
from localagent.api.models import Flow, StateName
from localagent.api.schedule_models import Overlap, Schedule, ScheduleSpec
from localagent.errors import ApiNotFound
from localagent.server.database import Database, dump_json, load_json
from localagent.server.fire_times import FireTimes, fire_times
from localagent.server.tables import flow_runs, run_history, schedules

NEXT_SHOWN = 5
_TIMING = ("cron", "interval", "anchor", "timezone")


def schedule_id(flow: str, name: str) -> str:
    return f"{flow}/{name}"


class SpecCache:
    """Parsed specs and their fire-time arithmetic, by the stored JSON text (parsing a cron costs ~50 us)."""

    def __init__(self) -> None:
        self._parsed: dict[str, tuple[ScheduleSpec, FireTimes]] = {}
        self._lock = threading.Lock()

    def get(self, text: str) -> tuple[ScheduleSpec, FireTimes]:
        with self._lock:
            found = self._parsed.get(text)
        if found is None:
            spec = ScheduleSpec.model_validate(load_json(text))
            found = (spec, fire_times(spec))
            with self._lock:
                if len(self._parsed) > 50_000:
                    self._parsed.clear()
                self._parsed[text] = found
        return found


class ScheduleStore:
    """The ``schedules`` table: sync from flow versions, read with next times, pause and resume."""

    def __init__(
        self, database: Database, clock: Callable[[], datetime], *, changed: Callable[[], None] | None = None
    ) -> None:
        self._db = database
        self._clock = clock
        self._changed = changed or (lambda: None)
        self.specs = SpecCache()

    def sync(self, conn: Connection, flow: Flow, now: datetime) -> None:
        """Make the schedule rows of ``flow.name`` those of this version (called in its registering transaction)."""
        existing = {row.name: row for row in conn.execute(sa.select(schedules).where(schedules.c.flow == flow.name))}
        wanted = {str(spec.name): spec for spec in flow.schedules}
        gone = [name for name in existing if name not in wanted]
        for name in gone:
            withdraw_ahead(conn, existing[name].id, now)
        if gone:
            conn.execute(sa.delete(schedules).where(schedules.c.flow == flow.name, schedules.c.name.in_(gone)))
        for name, spec in wanted.items():
            text = dump_json(spec.model_dump(mode="json"))
            row = existing.get(name)
            values: dict[str, Any] = {
                "flow_version": flow.version,
                "spec": text,
                "updated": now,
                "ahead": spec.overlap is Overlap.ALLOW,
            }
            if row is None:
                first = fire_times(spec).next_after(now)
                conn.execute(
                    sa.insert(schedules).values(
                        id=schedule_id(flow.name, name),
                        flow=flow.name,
                        name=name,
                        paused=False,
                        next_time=first,
                        last_time=None,
                        queued_time=None,
                        created=now,
                        **values,
                    )
                )
                continue
            # Runs made ahead for times to come were made from the old version: withdraw them, and make
            # them again from this one (same timing) or not at all (changed timing: start from now).
            earliest = withdraw_ahead(conn, row.id, now)
            before = load_json(row.spec)
            if any(before.get(key) != spec.model_dump(mode="json").get(key) for key in _TIMING):
                values.update(next_time=fire_times(spec).next_after(now), queued_time=None)
            elif earliest is not None and earliest < row.next_time:
                values["next_time"] = earliest
            conn.execute(sa.update(schedules).where(schedules.c.id == row.id).values(**values))
        self._changed()

    def all(self) -> list[Schedule]:
        with self._db.connect() as conn:
            rows = conn.execute(sa.select(schedules).order_by(schedules.c.flow, schedules.c.name)).all()
        return [self._model(row) for row in rows]

    def for_flow(self, flow: str) -> list[Schedule]:
        with self._db.connect() as conn:
            rows = conn.execute(sa.select(schedules).where(schedules.c.flow == flow).order_by(schedules.c.name)).all()
        return [self._model(row) for row in rows]

    def set_paused(self, flow: str, name: str, paused: bool) -> Schedule:
        """Pause (no run is made; a queued time is dropped) or resume (the next time after now)."""
        now = self._clock()
        sid = schedule_id(flow, name)
        with self._db.begin() as conn:
            row = conn.execute(sa.select(schedules).where(schedules.c.id == sid)).first()
            if row is None:
                raise ApiNotFound(404, f"flow {flow!r} has no schedule {name!r}")
            if bool(row.paused) != paused:
                if paused:
                    withdraw_ahead(conn, sid, now)
                values: dict[str, Any] = {"paused": paused, "updated": now, "queued_time": None}
                if not paused:
                    values["next_time"] = self.specs.get(row.spec)[1].next_after(now)
                conn.execute(sa.update(schedules).where(schedules.c.id == sid).values(**values))
            row = conn.execute(sa.select(schedules).where(schedules.c.id == sid)).first()
        self._changed()
        return self._model(row)

    def _model(self, row: Any) -> Schedule:
        spec, times = self.specs.get(row.spec)
        upcoming: list[datetime] = []
        if row.paused:
            upcoming = []
        elif row.next_time <= self._clock():
            # due already: the scheduler is about to handle it, so it comes first
            upcoming = [row.next_time, *times.upcoming(row.next_time, NEXT_SHOWN - 1)]
        else:
            # from now, not from next_time: the runs of the next seconds may be made already (ahead)
            upcoming = times.upcoming(self._clock(), NEXT_SHOWN)
        zone = parse_zone(spec.timezone)
        return Schedule(
            id=row.id,
            flow=row.flow,
            name=row.name,
            flow_version=row.flow_version,
            spec=spec,
            paused=bool(row.paused),
            next_times=upcoming,
            next_times_local=[moment.astimezone(zone) for moment in upcoming],
            queued_time=row.queued_time,
            last_time=row.last_time,
        )


def withdraw_ahead(conn: Connection, sid: str, now: datetime) -> datetime | None:
    """Delete the schedule's runs that wait for a start time still to come (made ahead of their fire time, or
    jittered) and were never tried; returns the earliest fire time withdrawn. No agent has seen them: a
    claim takes only runs whose start has come. Deleting (not cancelling) frees their (schedule, fire time)
    for the run made again."""
    waiting = conn.execute(
        sa.select(flow_runs.c.id, flow_runs.c.nominal_time).where(
            flow_runs.c.schedule_id == sid,
            flow_runs.c.state == StateName.SCHEDULED.value,
            flow_runs.c.attempt == 1,
            flow_runs.c.scheduled_start > now,
        )
    ).all()
    if not waiting:
        return None
    ids = [row.id for row in waiting]
    conn.execute(sa.delete(run_history).where(run_history.c.run_id.in_(ids)))
    conn.execute(
        sa.delete(flow_runs).where(
            flow_runs.c.id.in_(ids),
            flow_runs.c.state == StateName.SCHEDULED.value,
            flow_runs.c.scheduled_start > now,
        )
    )
    earliest: datetime = min(row.nominal_time for row in waiting)
    return earliest
