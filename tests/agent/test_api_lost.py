"""``runs.on_api_lost``: the watch over the time since the last contact with the API, with a stepped clock."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from localagent.agent.config_in_force import ConfigInForce
from localagent.agent.coordination.api_lost import ApiLostWatch, stop_message
from localagent.agent.coordination.lifecycle import Lifecycle
from localagent.agent.health_report import Contact
from tests.support.clock import FakeClock
from tests.support.fake_orchestrator import loaded_config


class Runs:
    """The two calls the watch makes on the run table."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.stops: list[str] = []

    def running(self) -> list[object]:
        return [object()] * self.count

    def stop_api_lost(self, message: str) -> int:
        self.stops.append(message)
        return self.count


def _watch(
    tmp_path: Path, clock: FakeClock, runs: Runs, **policy: object
) -> tuple[ApiLostWatch, ConfigInForce, Contact]:
    config = ConfigInForce(loaded_config(tmp_path, runs=policy))
    contact = Contact()
    contact.last = clock()
    watch = ApiLostWatch(config, contact, runs, Lifecycle(), clock=clock)  # type: ignore[arg-type]
    return watch, config, contact


def test_keep_logs_once_and_stops_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock, runs = FakeClock(), Runs(2)
    watch, _, _ = _watch(tmp_path, clock, runs, api_lost_after="10s")
    assert watch.look() == pytest.approx(1.0)
    clock.advance(9.5)
    assert watch.look() == pytest.approx(0.5)  # wakes at the deadline
    assert not watch.lost
    with caplog.at_level(logging.WARNING, logger="localagent.agent"):
        clock.advance(1)
        watch.look()
        clock.advance(5)
        watch.look()
    assert watch.lost and runs.stops == []
    lost_lines = [r.getMessage() for r in caplog.records if "API unreachable" in r.getMessage()]
    assert lost_lines == [
        'API unreachable for 10s: 2 run(s) keep running (runs.on_api_lost = "keep"); their '
        "states and output are reported when it is back"
    ]


def test_stop_stops_every_run_and_logs_the_return(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock, runs = FakeClock(), Runs(3)
    watch, _, contact = _watch(tmp_path, clock, runs, on_api_lost="stop", api_lost_after="1m")
    clock.advance(59)
    watch.look()
    assert runs.stops == []
    clock.advance(1)
    watch.look()
    watch.look()  # every look while lost: a repeat is a no-op for a run already stopping
    assert runs.stops == [stop_message(60.0)] * 2
    assert stop_message(60.0) == 'stopped: API unreachable for 1m (runs.on_api_lost = "stop")'
    with caplog.at_level(logging.WARNING, logger="localagent.agent"):
        contact.last = clock()  # a heartbeat got through
        watch.look()
    assert not watch.lost
    assert any("API contact is back" in r.getMessage() and "3 run(s) stopped" in r.getMessage() for r in caplog.records)


def test_a_reload_to_stop_applies_while_the_api_is_lost(tmp_path: Path) -> None:
    clock, runs = FakeClock(), Runs(1)
    watch, config, _ = _watch(tmp_path, clock, runs, api_lost_after="5s")
    clock.advance(6)
    watch.look()
    assert watch.lost and runs.stops == []
    config.swap(loaded_config(tmp_path, runs={"api_lost_after": "5s", "on_api_lost": "stop"}))
    watch.look()
    assert runs.stops == [stop_message(5.0)]
