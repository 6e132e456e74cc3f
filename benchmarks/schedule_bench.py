"""The scheduler under load: 10,000 schedules firing every minute, on the real clock.

    python benchmarks/schedule_bench.py                   # 10,000 schedules, 3 measured minutes, SQLite
    python benchmarks/schedule_bench.py --schedules 2000 --minutes 2
    python benchmarks/schedule_bench.py --database postgresql+psycopg://user:pw@127.0.0.1:5432/db

It registers ``--schedules`` flows, each with one schedule ``* * * * *`` (every one fires at the top of
each minute, the worst case), then runs the server's scheduler thread alone in this process (no HTTP
server, no agent) for ``--minutes`` whole minutes after a warm-up minute. Figures:

- **scheduler CPU per minute**: this process's CPU time (utime + stime, all threads; only the scheduler
  works) over the measured minutes, divided by their number, and as a share of one core.
- **lag**: for every run made in the measured minutes, ``created - nominal_time`` (the run's creation time
  as the scheduler stored it, taken per batch of 1,000 just before its insert, minus the fire time it is
  for): p50, p99 and max.
- **all visible after**: for each measured minute, when a separate reader first counted every run of that
  fire time committed (polled every 20 ms), minus the fire time: the end-to-end view.

Targets (issue 13): p99 lag <= 1 s, CPU < 5 % of one core.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from localagent.api.models import FlowSpec
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


def watch_visibility(svc: Services, fire_times: list[float], expected: int, seen: dict[float, float]) -> None:
    """For each fire time, record when all ``expected`` runs of it are committed (seen by another connection)."""
    for fire in fire_times:
        moment = datetime.fromtimestamp(fire, timezone.utc)
        query = sa.select(sa.func.count()).where(flow_runs.c.nominal_time == moment)
        while time.time() < fire + 55:
            with svc.database.connect() as conn:
                if conn.execute(query).scalar() == expected:
                    seen[fire] = time.time() - fire
                    break
            time.sleep(0.02)


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
        svc.scheduler.start()
        warm_up = next_minute()
        print("warm-up minute ...", flush=True)
        first = warm_up + 60  # the first measured fire time
        # The CPU window holds exactly the measured fire times, each with 58 s to be handled in.
        seen: dict[float, float] = {}
        fires = [first + 60 * minute for minute in range(args.minutes)]
        watcher = threading.Thread(target=watch_visibility, args=(svc, fires, args.schedules, seen), daemon=True)
        sleep_until(first - 2)
        watcher.start()
        cpu_before = cpu_seconds()
        sleep_until(first + 60 * args.minutes - 2)
        cpu = cpu_seconds() - cpu_before
        watcher.join()
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
            f"lag (created - nominal time): p50 {percentile(measured, 0.5):.3f} s, "
            f"p99 {percentile(measured, 0.99):.3f} s, max {max(measured):.3f} s, "
            f"mean {statistics.fmean(measured):.3f} s (target p99 <= 1 s)"
        )
    print("all runs of a fire time committed after: " + ", ".join(f"{seen.get(f, float('nan')):.3f} s" for f in fires))
    print("(the CPU figure includes the visibility reader's polling, a few queries a second)")


if __name__ == "__main__":
    main()
