"""Overlap, catch-up, deadline, jitter, parameters and pause/resume, driven by a stepped clock."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from localagent.api.models import StateName
from tests.server.schedule_support import Agent, SimulatedServer, iso, utc

START = utc(2026, 5, 4, 8, 0, 30)


@pytest.fixture
def sim(tmp_path: Path) -> Any:
    server = SimulatedServer(tmp_path, START)
    yield server
    server.close()


def _states(sim: SimulatedServer) -> list[tuple[str, str]]:
    return [(iso(row.nominal_time), row.state) for row in sim.runs("job/1")]


def test_allow_starts_a_run_at_every_time_while_others_run(sim: SimulatedServer) -> None:
    sim.flow(schedules=[{"cron": "* * * * *"}])
    agent = Agent(sim)
    for minute in range(1, 4):
        sim.run_until(START + timedelta(minutes=minute))
        agent.start_all()
    assert [state for _, state in _states(sim)] == ["Running"] * 3


def test_skip_never_overlaps_a_slow_run(sim: SimulatedServer) -> None:
    sim.flow(schedules=[{"cron": "* * * * *", "overlap": "skip"}])
    agent = Agent(sim)
    sim.run_until(START + timedelta(minutes=1))
    [first] = agent.start_all()
    sim.run_until(START + timedelta(minutes=4))  # three more times come while the first one runs
    assert _states(sim) == [("2026-05-04T08:01Z", "Running")]
    agent.finish(first)
    sim.run_until(START + timedelta(minutes=5))
    assert _states(sim) == [("2026-05-04T08:01Z", "Success"), ("2026-05-04T08:05Z", "Scheduled")]


def test_skip_counts_a_waiting_run_as_unfinished(sim: SimulatedServer) -> None:
    sim.flow(schedules=[{"cron": "* * * * *", "overlap": "skip"}])  # no agent: the run stays Scheduled
    sim.run_until(START + timedelta(minutes=3))
    assert _states(sim) == [("2026-05-04T08:01Z", "Scheduled")]


def test_cancel_previous_cancels_the_running_run(sim: SimulatedServer) -> None:
    sim.flow(schedules=[{"cron": "* * * * *", "overlap": "cancel_previous"}])
    agent = Agent(sim)
    sim.run_until(START + timedelta(minutes=1))
    [first] = agent.start_all()
    sim.run_until(START + timedelta(minutes=2))
    assert _states(sim) == [("2026-05-04T08:01Z", "Cancelling"), ("2026-05-04T08:02Z", "Scheduled")]
    assert "overlap cancel_previous" in sim.svc.runs.get(first).state_message


def test_queue_holds_one_time_until_the_run_ends(sim: SimulatedServer) -> None:
    sim.flow(schedules=[{"cron": "* * * * *", "overlap": "queue"}])
    agent = Agent(sim)
    sim.run_until(START + timedelta(minutes=1))
    [first] = agent.start_all()
    sim.run_until(START + timedelta(minutes=4))  # 08:02, 08:03, 08:04 come: only the newest waits
    assert _states(sim) == [("2026-05-04T08:01Z", "Running")]
    [schedule] = sim.svc.schedules.for_flow("job")
    assert schedule.queued_time is not None and iso(schedule.queued_time) == "2026-05-04T08:04Z"
    agent.finish(first)
    sim.clock.now += timedelta(seconds=5)
    sim.svc.scheduler.tick()
    assert _states(sim) == [("2026-05-04T08:01Z", "Success"), ("2026-05-04T08:04Z", "Scheduled")]


def _down_for_a_while(sim: SimulatedServer, catchup: str, **extra: Any) -> list[str]:
    sim.flow(schedules=[{"cron": "*/10 * * * *", "catchup": catchup, **extra}])
    sim.run_until(START + timedelta(minutes=10))  # 08:10 runs on time
    sim.clock.now = START + timedelta(hours=2, minutes=5)  # the server was down from 08:10 to 10:05
    sim.svc.scheduler.tick()
    return sim.nominal_times()


def test_catchup_latest_runs_the_most_recent_missed_time_once(sim: SimulatedServer) -> None:
    assert _down_for_a_while(sim, "latest") == ["2026-05-04T08:10Z", "2026-05-04T10:00Z"]
    [schedule] = sim.svc.schedules.for_flow("job")
    assert iso(schedule.next_times[0]) == "2026-05-04T10:10Z"


def test_catchup_all_runs_every_missed_time(sim: SimulatedServer) -> None:
    times = _down_for_a_while(sim, "all")
    assert len(times) == 12 and times[1] == "2026-05-04T08:20Z" and times[-1] == "2026-05-04T10:00Z"


def test_catchup_all_is_bounded_to_the_most_recent_hundred(sim: SimulatedServer) -> None:
    sim.flow(schedules=[{"cron": "* * * * *", "catchup": "all"}])
    sim.run_until(START + timedelta(minutes=1))
    sim.clock.now = START + timedelta(hours=5)  # 299 missed times
    sim.svc.scheduler.tick()
    times = sim.nominal_times()
    assert len(times) == 1 + 100
    assert times[1] == "2026-05-04T11:21Z" and times[-1] == "2026-05-04T13:00Z"


def test_catchup_none_runs_no_missed_time(sim: SimulatedServer) -> None:
    assert _down_for_a_while(sim, "none") == ["2026-05-04T08:10Z"]
    sim.run_until(START + timedelta(hours=2, minutes=10))
    assert sim.nominal_times() == ["2026-05-04T08:10Z", "2026-05-04T10:10Z"]


def test_deadline_drops_missed_times_older_than_it(sim: SimulatedServer) -> None:
    # all, but nothing older than 25 minutes at 10:05:30: 09:50 and 10:00 (09:40 is 25m30s old)
    times = _down_for_a_while(sim, "all", deadline="25m")
    assert times == ["2026-05-04T08:10Z", "2026-05-04T09:50Z", "2026-05-04T10:00Z"]


def test_deadline_shorter_than_the_lag_drops_even_the_latest(sim: SimulatedServer) -> None:
    assert _down_for_a_while(sim, "latest", deadline="4m") == ["2026-05-04T08:10Z"]


def test_jitter_delays_the_start_not_the_nominal_time(sim: SimulatedServer) -> None:
    sim.flow(schedules=[{"cron": "* * * * *", "jitter": "30s", "parameters": {"who": "cron"}}], parameters={"a": 1})
    sim.run_until(START + timedelta(minutes=20))
    runs = sim.runs("job/1")
    assert len(runs) == 20
    offsets = [(row.scheduled_start - row.nominal_time).total_seconds() for row in runs]
    assert all(0 <= offset < 30 for offset in offsets) and len(set(offsets)) > 1
    run = sim.svc.runs.get(runs[0].id)
    assert run.parameters == {"a": 1, "who": "cron"} and run.schedule == "job/1"
    assert run.nominal_time is not None and iso(run.nominal_time) == "2026-05-04T08:01Z"


def test_pause_stops_runs_and_resume_starts_from_now(sim: SimulatedServer) -> None:
    sim.flow(schedules=[{"cron": "*/5 * * * *", "catchup": "all"}])
    sim.run_until(START + timedelta(minutes=5))
    paused = sim.svc.schedules.set_paused("job", "1", True)
    assert paused.paused and paused.next_times == []
    sim.step_until(START + timedelta(minutes=30))
    assert sim.nominal_times() == ["2026-05-04T08:05Z"]
    resumed = sim.svc.schedules.set_paused("job", "1", False)
    assert [iso(t) for t in resumed.next_times][:2] == ["2026-05-04T08:35Z", "2026-05-04T08:40Z"]
    sim.run_until(START + timedelta(minutes=39))
    assert sim.nominal_times() == ["2026-05-04T08:05Z", "2026-05-04T08:35Z"]


def test_next_times_are_shown_in_the_zone_and_in_utc(sim: SimulatedServer) -> None:
    sim.clock.now = utc(2026, 3, 27, 12)
    sim.flow(schedules=[{"name": "night", "cron": "30 2 * * *", "timezone": "Europe/Berlin"}])
    [schedule] = sim.svc.schedules.for_flow("job")
    assert [iso(t) for t in schedule.next_times] == [
        "2026-03-28T01:30Z",
        "2026-03-29T01:00Z",
        "2026-03-30T00:30Z",
        "2026-03-31T00:30Z",
        "2026-04-01T00:30Z",
    ]
    assert [t.isoformat() for t in schedule.next_times_local[:2]] == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
    ]


def test_a_changed_flow_keeps_an_unchanged_schedule_and_its_missed_times(sim: SimulatedServer) -> None:
    sim.flow(schedules=[{"cron": "*/10 * * * *"}])
    sim.clock.now = START + timedelta(minutes=25)
    sim.flow(command="echo v2", schedules=[{"cron": "*/10 * * * *"}])  # new version, same timing
    sim.svc.scheduler.tick()
    [run] = sim.runs("job/1")
    assert iso(run.nominal_time) == "2026-05-04T08:20Z" and run.flow_version == 2
    sim.flow(command="echo v3", schedules=[])  # the schedule is removed
    assert sim.svc.schedules.for_flow("job") == []


def test_a_retried_scheduled_run_is_still_one_run(sim: SimulatedServer) -> None:
    sim.flow(schedules=[{"cron": "* * * * *", "overlap": "skip"}], retries=1)
    agent = Agent(sim)
    sim.run_until(START + timedelta(minutes=1))
    [first] = agent.start_all()
    from localagent.api.models import StateUpdate

    sim.svc.runs.set_state(first, StateUpdate(state=StateName.FAILED, exit_code=1))
    sim.run_until(START + timedelta(minutes=3))  # the retry (Scheduled again) blocks new ones under skip
    assert _states(sim) == [("2026-05-04T08:01Z", "Scheduled")]


def test_a_time_handled_twice_still_makes_one_run(sim: SimulatedServer) -> None:
    """A server that crashed after inserting runs but before moving next_time on, a second scheduler on the
    same database, or a clock stepped back: the unique key (schedule, fire time) keeps one run per time."""
    import sqlalchemy as sa

    from localagent.server.scheduler import Scheduler
    from localagent.server.tables import schedules

    sim.flow(schedules=[{"cron": "*/5 * * * *", "catchup": "all"}])
    sim.run_until(START + timedelta(minutes=30))
    assert len(sim.runs("job/1")) == 6
    with sim.svc.database.begin() as conn:  # as if the moves of next_time had never been committed
        conn.execute(sa.update(schedules).values(next_time=START + timedelta(minutes=4, seconds=30)))
    other = Scheduler(sim.svc.database, sim.svc.flows, sim.svc.schedules, sim.svc.notifier, sim.clock)
    assert other.tick().created == []
    sim.clock.now = START + timedelta(minutes=12)  # the clock stepped back 18 minutes
    with sim.svc.database.begin() as conn:
        conn.execute(sa.update(schedules).values(next_time=START + timedelta(minutes=4, seconds=30)))
    assert sim.svc.scheduler.tick().created == []
    assert sim.nominal_times() == [f"2026-05-04T08:{m:02d}Z" for m in (5, 10, 15, 20, 25, 30)]


def test_allow_runs_are_made_ahead_but_claimed_only_at_their_time(sim: SimulatedServer) -> None:
    from localagent.server.scheduler import LEAD

    sim.flow(schedules=[{"cron": "*/10 * * * *"}])
    agent = Agent(sim)
    sim.clock.now = utc(2026, 5, 4, 8, 10) - timedelta(seconds=LEAD / 2)  # inside the lead window
    sim.svc.scheduler.tick()
    [run] = sim.runs("job/1")
    assert iso(run.nominal_time) == "2026-05-04T08:10Z" and run.scheduled_start == run.nominal_time
    assert run.created < run.nominal_time
    assert agent.start_all() == []  # not before its time
    sim.clock.now = utc(2026, 5, 4, 8, 10)
    assert agent.start_all() == [run.id]


def test_pause_and_a_changed_flow_withdraw_runs_made_ahead(sim: SimulatedServer) -> None:
    sim.flow(schedules=[{"cron": "*/10 * * * *"}])
    sim.clock.now = utc(2026, 5, 4, 8, 9, 55)
    sim.svc.scheduler.tick()
    [ahead] = sim.runs("job/1")
    sim.flow(command="echo v2", schedules=[{"cron": "*/10 * * * *"}])  # same timing, new version
    sim.svc.scheduler.tick()
    [again] = sim.runs("job/1")
    assert again.id != ahead.id and again.flow_version == 2 and again.nominal_time == ahead.nominal_time
    sim.svc.schedules.set_paused("job", "1", True)
    assert sim.runs("job/1") == []
    sim.clock.now = utc(2026, 5, 4, 8, 10, 30)
    sim.svc.scheduler.tick()
    assert sim.runs("job/1") == []  # paused: 08:10 gets no run
    sim.svc.schedules.set_paused("job", "1", False)
    sim.run_until(utc(2026, 5, 4, 8, 21))
    assert sim.nominal_times() == ["2026-05-04T08:20Z"]


def test_next_times_include_a_time_whose_run_is_made_ahead(sim: SimulatedServer) -> None:
    sim.flow(schedules=[{"cron": "*/10 * * * *"}])
    sim.clock.now = utc(2026, 5, 4, 8, 9, 55)
    sim.svc.scheduler.tick()
    [schedule] = sim.svc.schedules.for_flow("job")
    assert [iso(t) for t in schedule.next_times[:2]] == ["2026-05-04T08:10Z", "2026-05-04T08:20Z"]
