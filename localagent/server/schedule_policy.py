"""Which due fire times of a schedule get a run: catch-up, deadline and overlap, as pure functions.

Usage::

    due = due_times(spec, times, next_time=row.next_time, now=now)
    due.run        # fire times that may get a run, oldest first (catch-up and deadline applied)
    due.next_time  # the first fire time after now: where the schedule continues
    step = apply_overlap(spec.overlap, due.run, active=2, queued=None)
    step.create, step.queue, step.cancel_active

A fire time seen more than ``MISSED_AFTER`` after it passed counts as missed (the server was down,
stopped, or the schedule could not be served); one seen sooner is on time and always runs. Missed times
follow ``catchup``: ``latest`` runs the most recent one (only if no on-time one is due), ``all`` runs
each of them, but one tick makes at most ``MAX_CATCHUP`` runs of a schedule (the most recent times; older
ones are dropped and logged), ``none`` runs none. A ``deadline`` drops
any time older than it, on time or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from localagent.api.schedule_models import Catchup, Overlap, ScheduleSpec
from localagent.server.fire_times import FireTimes

MISSED_AFTER = timedelta(seconds=60)
MAX_CATCHUP = 100
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class DueTimes:
    run: list[datetime]
    next_time: datetime
    last_time: datetime
    dropped: int
    """Due times that get no run (caught up no further, or past the deadline); at least, when more
    than ``MAX_CATCHUP`` were due."""


def due_times(
    spec: ScheduleSpec, times: FireTimes, *, next_time: datetime, now: datetime, until: datetime | None = None
) -> DueTimes:
    """The fire times from ``next_time`` up to ``until`` (default ``now``; later to make runs ahead of
    their time) and what becomes of them. Times after ``now`` are on time."""
    until = now if until is None else max(now, until)
    following = times.next_after(next_time)
    if following > until:  # the usual case: one time due, found with one evaluation
        due = [next_time]
    else:
        following = times.next_after(until)
        due = times.latest_in(next_time - _TICK, until, keep=MAX_CATCHUP + 1)
    on_time = [moment for moment in due if now - moment <= MISSED_AFTER]
    missed = [moment for moment in due if now - moment > MISSED_AFTER]
    if spec.catchup is Catchup.ALL:
        chosen = (missed + on_time)[-MAX_CATCHUP:]
    elif spec.catchup is Catchup.LATEST and missed and not on_time:
        chosen = missed[-1:]
    else:
        chosen = on_time
    if spec.deadline is not None:
        limit = timedelta(seconds=spec.deadline)
        chosen = [moment for moment in chosen if now - moment <= limit]
    return DueTimes(run=chosen, next_time=following, last_time=due[-1], dropped=max(0, len(due) - len(chosen)))


def past_deadline(spec: ScheduleSpec, moment: datetime, now: datetime) -> bool:
    return spec.deadline is not None and now - moment > timedelta(seconds=spec.deadline)


@dataclass(frozen=True)
class OverlapStep:
    create: list[datetime]
    """Fire times to make runs for now."""
    queue: datetime | None = None
    """The fire time to hold until the schedule's unfinished runs end (overlap ``queue``)."""
    cancel_active: bool = False
    """Cancel the schedule's unfinished runs first (overlap ``cancel_previous``)."""


def apply_overlap(overlap: Overlap, run: list[datetime], *, active: int, queued: datetime | None) -> OverlapStep:
    """What the overlap policy makes of the times ``run`` while ``active`` runs of the schedule are unfinished.

    Every policy but ``allow`` keeps one run of a schedule at a time, so of several due times only the
    most recent is used. ``queued`` is a time already held back; a newer one replaces it (one waits at most).
    """
    if not run:
        return OverlapStep(create=[], queue=queued)
    if overlap is Overlap.ALLOW:
        return OverlapStep(create=run)
    latest = run[-1]
    if overlap is Overlap.CANCEL_PREVIOUS:
        return OverlapStep(create=[latest], cancel_active=active > 0)
    if active == 0:
        return OverlapStep(create=[latest])
    if overlap is Overlap.QUEUE:
        return OverlapStep(create=[], queue=latest)
    return OverlapStep(create=[])  # skip
