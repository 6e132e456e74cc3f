"""When a schedule fires: the next time after an instant, the times in a span, all as UTC instants.

Usage::

    times = FireTimes.of(ScheduleSpec(cron="30 2 * * *", timezone="Europe/Berlin"))
    times.next_after(now)                  # the first fire time strictly after ``now`` (UTC)
    times.upcoming(now, 5)                 # the next five
    times.latest_in(after, until, keep=3)  # the last three fire times in (after, until]

Cron times come from cronsim, evaluated in the schedule's zone with Debian cron's daylight-saving rules:
a fixed time in the hour skipped in spring fires once right after the jump, a fixed time in the hour
repeated in autumn fires once (the first), and a wildcard-hour field fires at every real instant.
cronsim can answer a time at or before its start when the start lies in the repeated autumn hour (it
returns the first of the two wall times), so :meth:`next_after` steps on until it passes the start.

Interval times are ``anchor + k * interval`` in real (UTC) time, in whole microseconds, so a daylight-saving
change neither stretches nor shrinks them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo

from cronsim import CronSim

from localagent.api.cron import parse_zone
from localagent.api.schedule_models import ScheduleSpec

UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LOOKBACK = (timedelta(hours=1), timedelta(days=1), timedelta(days=32), timedelta(days=400), timedelta(days=1500))
"""Windows tried, smallest first, when looking back for missed cron times: a dense schedule is done in
the first (at most 60 evaluations for a per-minute cron), a yearly one in the fourth."""
_MAX_STEPS = 1_000_000


class FireTimes(Protocol):
    def next_after(self, moment: datetime) -> datetime: ...

    def latest_in(self, after: datetime, until: datetime, keep: int) -> list[datetime]: ...

    def upcoming(self, moment: datetime, count: int) -> list[datetime]: ...


def fire_times(spec: ScheduleSpec) -> FireTimes:
    """The fire-time arithmetic of ``spec`` (cron or interval)."""
    if spec.cron is not None:
        return CronTimes(spec.cron, spec.timezone)
    assert spec.interval is not None
    return IntervalTimes(spec.interval, spec.anchor, spec.timezone)


class _Upcoming:
    def next_after(self, moment: datetime) -> datetime:
        raise NotImplementedError

    def upcoming(self, moment: datetime, count: int) -> list[datetime]:
        times: list[datetime] = []
        for _ in range(count):
            moment = self.next_after(moment)
            times.append(moment)
        return times


class CronTimes(_Upcoming):
    """A cron expression read in the IANA zone ``zone_name``."""

    def __init__(self, expr: str, zone_name: str) -> None:
        self.expr = expr
        self.zone = parse_zone(zone_name)

    def _iterate(self, start: datetime) -> Iterator[datetime]:
        local = start.astimezone(self.zone)
        for found in CronSim(self.expr, local):
            yield found.astimezone(UTC)

    def next_after(self, moment: datetime) -> datetime:
        return _cron_next_after(self.expr, self.zone, moment)

    def latest_in(self, after: datetime, until: datetime, keep: int) -> list[datetime]:
        if keep <= 0 or until <= after:
            return []
        for window in (*_LOOKBACK, None):
            start = after if window is None else max(after, until - window)
            found: deque[datetime] = deque(maxlen=keep)
            for steps, moment in enumerate(self._iterate(start)):
                if moment > until or steps > _MAX_STEPS:
                    break
                if moment > start:
                    found.append(moment)
            if len(found) == keep or start == after:
                return list(found)
        return []  # pragma: no cover - the last window starts at ``after``


@lru_cache(maxsize=8192)
def _cron_next_after(expr: str, zone: ZoneInfo, moment: datetime) -> datetime:
    """Cached: schedules sharing an expression and zone (every ``*/5 * * * *`` in UTC) and due at the same
    time ask the same question in one tick; cronsim parses the expression on every call (~50 us)."""
    local = moment.astimezone(zone)
    for found in CronSim(expr, local):
        utc = found.astimezone(UTC)
        if utc > moment:
            return utc
    raise ValueError(f"cron {expr!r} never fires after {moment.isoformat()}")  # pragma: no cover


class IntervalTimes(_Upcoming):
    """Every ``interval`` seconds of real time, counted from ``anchor``."""

    def __init__(self, interval: float, anchor: datetime | None, zone_name: str) -> None:
        if anchor is None:
            anchor = datetime(2000, 1, 1, tzinfo=parse_zone(zone_name))
        self.step = round(interval * 1_000_000)
        self.anchor = _micros(anchor)

    def _index_at_or_before(self, moment: datetime) -> int:
        return (_micros(moment) - self.anchor) // self.step

    def _time(self, index: int) -> datetime:
        return _EPOCH + timedelta(microseconds=self.anchor + index * self.step)

    def next_after(self, moment: datetime) -> datetime:
        return self._time(self._index_at_or_before(moment) + 1)

    def latest_in(self, after: datetime, until: datetime, keep: int) -> list[datetime]:
        if keep <= 0 or until <= after:
            return []
        last = self._index_at_or_before(until)
        first = max(self._index_at_or_before(after) + 1, last - keep + 1)
        return [self._time(index) for index in range(first, last + 1)]


def _micros(moment: datetime) -> int:
    delta = moment.astimezone(UTC) - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
