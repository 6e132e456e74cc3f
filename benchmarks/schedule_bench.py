"""The scheduler under load: 10,000 schedules firing every minute, on the real clock.

    python benchmarks/schedule_bench.py                   # 10,000 schedules, 3 measured minutes, SQLite
    python benchmarks/schedule_bench.py --schedules 2000 --minutes 2
    python benchmarks/schedule_bench.py --database postgresql+psycopg://user:pw@127.0.0.1:5432/db

It registers ``--schedules`` flows, each with one schedule ``* * * * *`` (every one fires at the top of
each minute, the worst case), then runs the server's scheduler thread alone in this process (no HTTP
server, no agent) for ``--minutes`` whole minutes after a warm-up minute. Figures:

- **scheduler CPU per minute**: this process's CPU time (utime + stime, all threads; only the scheduler
  works) over the measured minutes, divided by their number, and as a share of one core.
- **made ahead by / lag**: for every run made in the measured minutes, ``created - nominal_time`` (the
  run's creation time as the scheduler stored it, per batch of 1,000 just before its insert, minus the fire
  time it is for). Runs of ``allow`` schedules are made up to 20 s ahead (``scheduler.LEAD``), so this is
  negative; the **lag** is ``max(0, created - nominal_time)``, how late a run was ready to be claimed.
- **tick done after**: for each measured minute, when the tick that made its runs returned (every batch
  committed) minus the fire time: negative when they were all in place before it.

Targets (issue 13): p99 lag <= 1 s, CPU < 5 % of one core.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from localagent.api.models import FlowSpec
from localagent.server.scheduler import TickResult
from localagent.server.services import Services
from localagent.server.settings import ServerSettings
from localagent.server.tables import flow_runs


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def next_minute() -> float:
    return float((int(time.time()) // 60 + 1) * 60)


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def register(svc: Services, count: int) -> None:
    started = time.monotonic()
    for index in range(count):
        svc.flows.register(
            FlowSpec(name=f"job-{index:05d}", command="true", schedules=[{"cron": "* * * * *"}])  # type: ignore[list-item]
        )
        if index and index % 2000 == 0:
            print(f"  registered {index} schedules ({time.monotonic() - started:.0f}s)", flush=True)
    print(f"registered {count} schedules in {time.monotonic() - started:.1f}s", flush=True)


def lags(svc: Services, since: float, until: float) -> list[float]:
    begin = datetime.fromtimestamp(since, timezone.utc)
    end = datetime.fromtimestamp(until, timezone.utc)
    query = sa.select(flow_runs.c.created, flow_runs.c.nominal_time).where(
        flow_runs.c.nominal_time >= begin, flow_runs.c.nominal_time < end
    )
    with svc.database.connect() as conn:
        return [(row.created - row.nominal_time).total_seconds() for row in conn.execute(query)]


def time_ticks(svc: Services, ends: list[tuple[float, int]]) -> None:
    """Record when each tick that made runs returned (its last batch committed) and how many it made."""
    tick = svc.scheduler.tick

    def timed() -> TickResult:
        result = tick()
        if result.created:
            ends.append((time.time(), len(result.created)))
        return result

    svc.scheduler.tick = timed  # type: ignore[method-assign]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--minutes", type=int, default=3, help="measured minutes (after one warm-up minute)")
    parser.add_argument("--database", help="database URL (default: SQLite in a temp dir)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="schedule-bench-") as work:
        url = args.database or f"sqlite:///{Path(work) / 'bench.db'}"
        svc = Services.build(ServerSettings(database_url=url))
        register(svc, args.schedules)
        ends: list[tuple[float, int]] = []
        time_ticks(svc, ends)
        svc.scheduler.start()
        warm_up = next_minute()
        print("warm-up minute ...", flush=True)
        first = warm_up + 60  # the first measured fire time
        # The CPU window holds exactly the measured fire times, each with 58 s to be handled in.
        sleep_until(first - 2)
        cpu_before = cpu_seconds()
        sleep_until(first + 60 * args.minutes - 2)
        cpu = cpu_seconds() - cpu_before
        svc.scheduler.stop()
        measured = lags(svc, first, first + 60 * args.minutes)
        expected = args.schedules * args.minutes
        svc.database.dispose()

    print(f"\n{args.schedules} schedules every minute, {args.minutes} measured minutes, {url.split(':')[0]}")
    print(f"runs made for the measured minutes: {len(measured)} (expected {expected})")
    per_minute = cpu / args.minutes
    print(f"scheduler CPU per minute: {per_minute:.2f} s = {per_minute / 60 * 100:.2f} % of one core (target < 5 %)")
    if measured:
        print(
            f"created - nominal time: p50 {percentile(measured, 0.5):.3f} s, p99 {percentile(measured, 0.99):.3f} s, "
            f"max {max(measured):.3f} s, mean {statistics.fmean(measured):.3f} s (negative: made ahead)"
        )
        late = [max(0.0, value) for value in measured]
        print(
            f"lag (max(0, created - nominal time)): p50 {percentile(late, 0.5):.3f} s, "
            f"p99 {percentile(late, 0.99):.3f} s, max {max(late):.3f} s (target p99 <= 1 s)"
        )
    done = [
        f"{end - fire:.3f} s ({made} runs)"
        for fire in (first + 60 * minute for minute in range(args.minutes))
        for end, made in ends
        if fire - 30 <= end < fire + 30
    ]
    print("ticks done after (end of tick - fire time): " + ", ".join(done))


if __name__ == "__main__":
    main()
