"""The scheduler: a background sweep of the server that makes the runs of due schedules, exactly once.

Usage::

    scheduler = Scheduler(database, flows, schedules, notifier, clock=utc_now)
    scheduler.tick()                 # handle everything due at clock(); tests step the clock and call this
    scheduler.start(); ...; scheduler.stop()     # in the server: a thread that ticks when the next time is due

One tick, top to bottom:

1. Read the schedules due at ``now`` (not paused, ``next_time <= now``), a batch at a time; on PostgreSQL
   with ``FOR UPDATE SKIP LOCKED``, so another server process ticking at once takes other schedules.
   Schedules with overlap ``allow`` are read ``lead`` (20 s) early and their runs made ahead, with the fire
   time (plus jitter) as the start: no agent can claim one before then, and ten thousand schedules firing
   in the same second have their runs ready when it comes instead of a batch at a time after it. The other
   policies decide on the runs unfinished at the fire time, so they are handled when it has come.
2. For each, ``schedule_policy.due_times`` applies catch-up and deadline, and ``apply_overlap`` the
   overlap policy (reading the schedule's unfinished runs only when the policy needs them).
3. Insert the runs with ``ON CONFLICT DO NOTHING`` on the unique key (schedule_id, nominal_time): a run
   for a fire time exists at most once, whoever inserts it: two server processes, a server restarted after
   a crash between insert and commit, a clock stepped back. Only rows really inserted get a history entry.
4. Move each schedule's ``next_time`` on to the first fire time after ``now``; commit the batch.
5. Release queued times (overlap ``queue``) whose schedule has no unfinished run any more.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from localagent.api.models import StateName
from localagent.api.schedule_models import Overlap, ScheduleSpec
from localagent.errors import LocalAgentError
from localagent.server.database import Database, dump_json
from localagent.server.flows_store import FlowStore
from localagent.server.lost_runs import record_cancel
from localagent.server.names import generate_run_name
from localagent.server.notify import RUNS, Notifier, logs_topic
from localagent.server.schedule_policy import apply_overlap, due_times, past_deadline
from localagent.server.schedules_store import ScheduleStore
from localagent.server.tables import flow_runs, schedules
from localagent.server.transitions import apply_transition, record_histories

log = logging.getLogger(__name__)
S = StateName
BATCH = 1000
MAX_WAIT = 1.0
"""Longest sleep between ticks: schedules added by another server process are seen within it."""
UNFINISHED = (S.SCHEDULED.value, S.SUBMITTED.value, S.RUNNING.value, S.CANCELLING.value, S.UNKNOWN.value)
LEAD = 20.0
"""Seconds ahead of its fire time that a run of an ``allow`` schedule is made (see the module docstring)."""
_NOW = sa.bindparam("now", type_=schedules.c.next_time.type)
_UNTIL = sa.bindparam("until", type_=schedules.c.next_time.type)
_DUE = (
    sa.select(schedules)
    .where(
        schedules.c.paused == sa.false(),
        sa.or_(
            schedules.c.next_time <= _NOW,
            sa.and_(schedules.c.ahead == sa.true(), schedules.c.next_time <= _UNTIL),
        ),
    )
    .order_by(schedules.c.next_time, schedules.c.id)
    .limit(BATCH)
)
_NEXT_DUE = sa.select(sa.func.min(schedules.c.next_time)).where(
    schedules.c.paused == sa.false(), schedules.c.ahead == sa.bindparam("ahead", type_=sa.Boolean)
)
_QUEUED = sa.select(schedules).where(schedules.c.paused == sa.false(), schedules.c.queued_time.is_not(None))
_UNFINISHED_OF = sa.select(flow_runs).where(
    flow_runs.c.schedule_id == sa.bindparam("sid"), flow_runs.c.state.in_(UNFINISHED)
)


@dataclass
class TickResult:
    created: list[str] = field(default_factory=list)
    """Ids of the runs this tick made."""
    dropped: int = 0
    cancelled: list[str] = field(default_factory=list)


@dataclass
class _Batch:
    """What one transaction writes."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    schedule_updates: list[dict[str, Any]] = field(default_factory=list)


class Scheduler:
    """Makes the runs of due schedules; ``tick()`` once, or ``start()`` a thread that ticks when due."""

    def __init__(
        self,
        database: Database,
        flows: FlowStore,
        store: ScheduleStore,
        notifier: Notifier,
        clock: Callable[[], datetime],
        *,
        lead: float = LEAD,
    ) -> None:
        self._db = database
        self._lead = timedelta(seconds=lead)
        self._flows = flows
        self._store = store
        self._notifier = notifier
        self._clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        insert = (postgresql.insert if database.backend == "postgresql" else sqlite.insert)(flow_runs)
        self._insert_runs = insert.on_conflict_do_nothing().returning(flow_runs.c.id)

    def wake(self) -> None:
        """Schedules changed: look again now instead of at the next due time."""
        self._wake.set()

    def tick(self) -> TickResult:
        now = self._clock()
        result = TickResult()
        while self._tick_batch(now, result):
            pass
        self._release_queued(now, result)
        if result.created or result.cancelled:
            self._notifier.notify(RUNS, *(logs_topic(run_id) for run_id in result.cancelled))
        return result

    def _tick_batch(self, now: datetime, result: TickResult) -> bool:
        """Handle up to ``BATCH`` due schedules in one transaction; True if there may be more."""
        batch = _Batch()
        with self._db.begin() as conn:
            query = _DUE.with_for_update(skip_locked=True, of=schedules) if self._db.shared else _DUE
            rows = conn.execute(query, {"now": now, "until": now + self._lead}).all()
            for row in rows:
                self._plan(conn, row, now, batch, result)
            if batch.runs:
                # ``created`` says when the run really came to be: this batch's time, after the batches
                # before it in a big tick (``now`` stays the tick's time for the decisions).
                made_at = max(now, self._clock())
                for run in batch.runs:
                    run["created"] = run["updated"] = made_at
                created = [r.id for r in conn.execute(self._insert_runs, batch.runs)]
                if created:
                    record_histories(conn, created, S.SCHEDULED, now, "created by schedule")
                result.created.extend(created)
            if batch.schedule_updates:
                conn.execute(
                    sa.update(schedules)
                    .where(schedules.c.id == sa.bindparam("sid"))
                    .values(
                        next_time=sa.bindparam("new_next"),
                        last_time=sa.bindparam("new_last"),
                        queued_time=sa.bindparam("new_queued"),
                        updated=now,
                    ),
                    batch.schedule_updates,
                )
        return len(rows) == BATCH

    def _plan(self, conn: Connection, row: Any, now: datetime, batch: _Batch, result: TickResult) -> None:
        spec, times = self._store.specs.get(row.spec)
        until = now + self._lead if row.ahead else now
        due = due_times(spec, times, next_time=row.next_time, now=now, until=until)
        result.dropped += due.dropped
        if due.dropped:
            log.info("schedule %s: %d due time(s) get no run (catch-up %s)", row.id, due.dropped, spec.catchup.value)
        unfinished: list[Any] = []
        if spec.overlap is not Overlap.ALLOW and due.run:
            unfinished = list(conn.execute(_UNFINISHED_OF, {"sid": row.id}).all())
        step = apply_overlap(spec.overlap, due.run, active=len(unfinished), queued=row.queued_time)
        if step.cancel_active:
            result.cancelled.extend(self._cancel(conn, unfinished, row.id, now))
        for moment in step.create:
            batch.runs.append(self._run_row(conn, row, spec, moment, now))
        batch.schedule_updates.append(
            {"sid": row.id, "new_next": due.next_time, "new_last": due.last_time, "new_queued": step.queue}
        )

    def _run_row(
        self, conn: Connection, row: Any, spec: ScheduleSpec, moment: datetime, now: datetime
    ) -> dict[str, Any]:
        flow = self._flows.get(row.flow, row.flow_version, conn=conn)
        return {
            "id": uuid.uuid4().hex,
            "name": generate_run_name(),
            "flow": flow.name,
            "flow_version": flow.version,
            "parameters": dump_json({**flow.parameters, **spec.parameters}),
            "labels": dump_json(list(dict.fromkeys([*flow.labels, *flow.run_config.labels]))),
            "run_config_type": flow.run_config.type,
            "scheduled_start": moment + _jitter(row.id, moment, spec.jitter),
            "state": S.SCHEDULED.value,
            "state_message": "",
            "attempt": 1,
            "created": now,
            "updated": now,
            "schedule_id": row.id,
            "nominal_time": moment,
        }

    def _cancel(self, conn: Connection, unfinished: list[Any], sid: str, now: datetime) -> list[str]:
        cancelled = []
        for run in unfinished:
            state = S(run.state)
            if state is S.CANCELLING:
                continue
            if state is S.UNKNOWN:  # its agent is silent: the cancel waits for it (see lost_runs)
                record_cancel(conn, run.id, now)
                cancelled.append(run.id)
                continue
            target = S.CANCELLED if state is S.SCHEDULED else S.CANCELLING
            message = f"cancelled: a newer run of schedule {sid} is starting (overlap cancel_previous)"
            if apply_transition(conn, run, target, message, now, self._flows, retry=False):
                cancelled.append(run.id)
        return cancelled

    def _release_queued(self, now: datetime, result: TickResult) -> None:
        """Overlap ``queue``: make the held run once the schedule has no unfinished run (or drop it at its deadline)."""
        with self._db.connect() as conn:
            waiting = conn.execute(_QUEUED).all()
        for row in waiting:
            spec, _times = self._store.specs.get(row.spec)
            with self._db.begin() as conn:
                self._db.serialize(conn, f"schedule:{row.id}")
                current = conn.execute(sa.select(schedules).where(schedules.c.id == row.id)).first()
                if current is None or current.queued_time is None or current.paused:
                    continue
                if conn.execute(_UNFINISHED_OF, {"sid": row.id}).first() is not None:
                    continue
                moment = current.queued_time
                if not past_deadline(spec, moment, now):
                    created = [
                        r.id for r in conn.execute(self._insert_runs, [self._run_row(conn, current, spec, moment, now)])
                    ]
                    if created:
                        record_histories(conn, created, S.SCHEDULED, now, "created by schedule (queued)")
                    result.created.extend(created)
                else:
                    result.dropped += 1
                conn.execute(sa.update(schedules).where(schedules.c.id == row.id).values(queued_time=None, updated=now))

    # -- the thread -------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="localagent-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def seconds_until_due(self) -> float:
        """How long the loop may sleep: until the earliest next time, at most ``MAX_WAIT``."""
        with self._db.connect() as conn:
            waiting: datetime | None = conn.execute(_NEXT_DUE, {"ahead": False}).scalar()
            ahead: datetime | None = conn.execute(_NEXT_DUE, {"ahead": True}).scalar()
        candidates = [moment for moment in (waiting, None if ahead is None else ahead - self._lead) if moment]
        if not candidates:
            return MAX_WAIT
        earliest = min(candidates)
        return float(max(0.0, min(MAX_WAIT, (earliest - self._clock()).total_seconds())))

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
                wait = self.seconds_until_due()
            except LocalAgentError as exc:  # the database hiccuped; the next tick tries again
                log.warning("scheduler tick failed: %s", exc)
                wait = MAX_WAIT
            self._wake.wait(wait)
            self._wake.clear()


def _jitter(sid: str, moment: datetime, jitter: float) -> timedelta:
    """A delay in [0, jitter) fixed by (schedule, fire time): every server process picks the same one."""
    if jitter <= 0:
        return timedelta(0)
    digest = hashlib.blake2b(f"{sid}@{moment.isoformat()}".encode(), digest_size=8).digest()
    return timedelta(seconds=jitter * int.from_bytes(digest, "big") / 2**64)
