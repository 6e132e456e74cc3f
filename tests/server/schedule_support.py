"""A server's stores on a SQLite file with a clock the test steps: the scheduler never waits for real time.

Usage::

    sim = SimulatedServer(tmp_path, start=utc(2026, 3, 28))
    sim.flow("job", schedules=[{"cron": "30 2 * * *", "timezone": "Europe/Berlin"}])
    sim.run_until(utc(2026, 3, 31))           # jumps from due time to due time, ticking at each
    sim.nominal_times("job/1")                # the fire times that got a run, in UTC
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from localagent.api.models import FlowSpec
from localagent.server.services import Services
from localagent.server.settings import ServerSettings
from localagent.server.tables import flow_runs, schedules


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)  # type: ignore[misc]


class StepClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


class SimulatedServer:
    def __init__(self, tmp_path: Path, start: datetime, database_url: str | None = None) -> None:
        self.clock = StepClock(start)
        url = database_url or f"sqlite:///{tmp_path / 'sched.db'}"
        self.svc = Services.build(ServerSettings(database_url=url), clock=self.clock)

    def flow(self, name: str = "job", **spec: Any) -> None:
        self.svc.flows.register(FlowSpec.model_validate({"name": name, "command": "true", **spec}))

    def earliest_due(self) -> datetime | None:
        with self.svc.database.connect() as conn:
            found: datetime | None = conn.execute(
                sa.select(sa.func.min(schedules.c.next_time)).where(schedules.c.paused == sa.false())
            ).scalar()
        return found

    def run_until(self, end: datetime) -> None:
        """Tick at each due time (as the real loop would, with no lag) until ``end``."""
        while True:
            due = self.earliest_due()
            if due is None or due > end:
                break
            self.clock.now = max(due, self.clock.now)
            self.svc.scheduler.tick()
        self.clock.now = end

    def step_until(self, end: datetime, step: timedelta = timedelta(minutes=1)) -> None:
        """Tick every ``step`` of simulated time until ``end``."""
        while self.clock.now < end:
            self.clock.now = min(end, self.clock.now + step)
            self.svc.scheduler.tick()

    def runs(self, schedule_id: str | None = None) -> list[Any]:
        query = sa.select(flow_runs).order_by(flow_runs.c.nominal_time, flow_runs.c.created)
        if schedule_id is not None:
            query = query.where(flow_runs.c.schedule_id == schedule_id)
        with self.svc.database.connect() as conn:
            return list(conn.execute(query).all())

    def nominal_times(self, schedule_id: str = "job/1") -> list[str]:
        return [iso(row.nominal_time) for row in self.runs(schedule_id)]

    def close(self) -> None:
        self.svc.database.dispose()


def iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


class Agent:
    """A real agent registration on the simulated server that claims runs and reports their states."""

    def __init__(self, sim: SimulatedServer, name: str = "agent-1") -> None:
        from localagent.api.models import AgentRegister

        self.sim = sim
        self.id = sim.svc.agents.register(AgentRegister(name=name, run_unlabeled=True)).id

    def start_all(self) -> list[str]:
        """Claim every due run and report it Running; returns their ids."""
        from localagent.api.models import ClaimRequest, StateName, StateUpdate

        reply = self.sim.svc.claims.claim_now(self.id, ClaimRequest(slots=100, run_unlabeled=True)).reply
        for claimed in reply.runs:
            self.sim.svc.runs.set_state(claimed.run.id, StateUpdate(state=StateName.RUNNING, pid=1))
        return [claimed.run.id for claimed in reply.runs]

    def finish(self, run_id: str) -> None:
        from localagent.api.models import StateName, StateUpdate

        self.sim.svc.runs.set_state(run_id, StateUpdate(state=StateName.SUCCESS, exit_code=0))
