"""Two server processes on one PostgreSQL database tick their schedulers over a simulated day: every fire
time gets exactly one run.

Both processes read one simulated time (a day in about a minute of real time) and tick as fast as they
can, so they race for the same due schedules all day long. ``catchup = "all"`` makes the count exact even
when the busy machine stalls a process between two ticks.

The expected counts are worked out by hand for 2026-10-24 12:00Z .. 2026-10-25 12:00Z, a day across
Europe/Berlin's autumn change (25 October 01:00Z, 03:00 CEST -> 02:00 CET).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from localagent.api.models import FlowSpec
from localagent.server.services import Services
from localagent.server.settings import ServerSettings
from localagent.server.tables import flow_runs
from tests.pg.support import pg_database, pg_url, requires_postgres
from tests.server.schedule_support import StepClock, utc

pytestmark = requires_postgres
__all__ = ["pg_database", "pg_url"]

REPO = Path(__file__).resolve().parents[2]
START, END = utc(2026, 10, 24, 12), utc(2026, 10, 25, 12)
SPEED = "1440"  # simulated seconds per real second: the day takes a minute
SCHEDULES = {
    # every minute of 24 real hours
    "minutely": ({"cron": "* * * * *", "catchup": "all"}, 24 * 60),
    # every real quarter hour, the repeated hour's four included: 24 * 4
    "quarter-berlin": ({"cron": "*/15 * * * *", "timezone": "Europe/Berlin", "catchup": "all"}, 24 * 4),
    # 02:30 Berlin on 25 October: once (00:30Z), not again at 02:30 CET
    "night-berlin": ({"cron": "30 2 * * *", "timezone": "Europe/Berlin", "catchup": "all"}, 1),
    # every 7 real minutes from the day's start: 1440 / 7 = 205.7 -> 205 times in (12:00, 12:00]
    "seven": ({"interval": "7m", "anchor": "2026-10-24T12:00:00Z", "catchup": "all"}, 205),
    # 5 minutes with overlap skip: no agent runs them, so only the first is ever made
    "skipping": ({"cron": "*/5 * * * *", "overlap": "skip"}, 1),
}


def test_two_server_processes_make_every_run_exactly_once(pg_url: str) -> None:
    setup = Services.build(ServerSettings(database_url=pg_url), clock=StepClock(START))
    for name, (schedule, _count) in SCHEDULES.items():
        setup.flows.register(FlowSpec.model_validate({"name": name, "command": "true", "schedules": [schedule]}))
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.pg.schedule_worker",
                pg_url,
                START.isoformat(),
                END.isoformat(),
                SPEED,
            ],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for worker in workers:  # both have their stores open: start the day for both at once
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
    origin = f"{time.time() + 0.2}\n"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write(origin)
        worker.stdin.flush()
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
    made = [int(out.strip()) for out, _err in outputs]

    with setup.database.connect() as conn:
        counts = dict(
            conn.execute(
                sa.select(flow_runs.c.flow, sa.func.count()).group_by(flow_runs.c.flow).order_by(flow_runs.c.flow)
            ).all()
        )
        repeats = conn.execute(
            sa.select(flow_runs.c.schedule_id, flow_runs.c.nominal_time)
            .group_by(flow_runs.c.schedule_id, flow_runs.c.nominal_time)
            .having(sa.func.count() > 1)
        ).all()
        night = conn.execute(sa.select(flow_runs.c.nominal_time).where(flow_runs.c.flow == "night-berlin")).scalars()
        night_times = [moment.isoformat() for moment in night]
    setup.database.dispose()
    assert repeats == []
    assert counts == {name: count for name, (_schedule, count) in SCHEDULES.items()}
    assert sum(made) == sum(counts.values())
    assert all(count > 0 for count in made), f"one process made no run at all: {made}"
    assert night_times == ["2026-10-25T00:30:00+00:00"]
