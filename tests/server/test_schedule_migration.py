"""A database from before schedules (the schema of commit 2c5ef58, filled) upgrades and keeps its rows, its
flows stay unchanged when re-registered, and its flows can be given schedules."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from localagent.api.models import FlowSpec
from tests.server.schedule_support import SimulatedServer, utc
from tests.server.test_migrations import OLD, ROWS


def test_old_database_gets_schedules_and_keeps_its_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url, poolclass=NullPool)
    OLD.create_all(engine)
    with engine.begin() as conn:
        for name, rows in ROWS.items():
            conn.execute(OLD.tables[name].insert(), rows)
    engine.dispose()

    sim = SimulatedServer(tmp_path, utc(2026, 6, 1, 12), database_url=url)
    try:
        runs = sim.svc.runs.list_runs()
        assert sorted(run.name for run in runs) == ["run-0", "run-1", "run-2", "run-3"]
        assert all(run.schedule is None and run.nominal_time is None for run in runs)
        # the stored spec of version 2 is re-registered as it is: no new version for an unchanged flow
        same = FlowSpec.model_validate_json(ROWS["flows"][1]["spec"])  # type: ignore[arg-type]
        assert sim.svc.flows.register(same).version == 2
        scheduled = sim.svc.flows.register(
            same.model_copy(
                update={
                    "schedules": FlowSpec(
                        name="etl",
                        command="x",
                        schedules=[{"cron": "0 * * * *"}],  # type: ignore[list-item]
                    ).schedules
                }
            )
        )
        assert scheduled.version == 3
        sim.run_until(utc(2026, 6, 1, 12) + timedelta(hours=2))
        assert sim.nominal_times("etl/1") == ["2026-06-01T13:00Z", "2026-06-01T14:00Z"]
    finally:
        sim.close()
