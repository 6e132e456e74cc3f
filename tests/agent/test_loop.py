"""The agent loop with fakes injected through its seams: claims, slots, cancels, registration, signals, reload."""

from __future__ import annotations

import dataclasses
import functools
import logging
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from localagent.agent.coordination.session import RunOrigin
from localagent.agent.metrics import AgentMetrics
from localagent.agent.run_table import RunTable
from localagent.agent.signals import SignalInbox
from localagent.agent.supervisor import Agent
from localagent.api.models import StateName
from localagent.config import LoadedConfig
from localagent.config.render import public_hash
from localagent.errors import ConfigError, ConfigProblem
from tests.support.agent_harness import Harness
from tests.support.fake_orchestrator import FakeConsole, FakeExecution, FakeServer, claimed_run, loaded_config
from tests.support.wait import wait_for


def test_claims_send_labels_and_types_and_max_polls_ends_with_exit_0(tmp_path: Path) -> None:
    server = FakeServer()
    loaded = loaded_config(
        tmp_path, agent={"labels": ["etl", "gpu"], "hostname_label": False, "run_unlabeled": True, "max_polls": 3}
    )
    harness = Harness(loaded, server, auto_finish=StateName.SUCCESS)
    assert harness.join() == 0
    assert len(server.claims) == 3
    for claim in server.claims:
        assert claim.labels == ["etl", "gpu"]
        assert claim.run_unlabeled is True
        assert claim.run_config_types == ["universal", "local"]
        assert claim.wait == pytest.approx(0.2)
    assert server.registrations[0].name == "a1"
    assert server.registrations[0].labels == ["etl", "gpu"]


def test_claimed_runs_start_with_a_client_scoped_to_their_token(tmp_path: Path) -> None:
    server = FakeServer()
    server.add_runs(claimed_run("r1"), claimed_run("r2"))
    harness = Harness(loaded_config(tmp_path), server, auto_finish=StateName.SUCCESS)
    wait_for(lambda: len(harness.executions) == 2, timeout=10.0)
    harness.inbox.deliver(signal.SIGTERM)
    assert harness.join() == 0
    assert harness.started_ids() == ["r1", "r2"]
    for execution in harness.executions:
        assert execution.started
        assert execution.api.key == f"token-{execution.run_id}"
        assert execution.api.url == "http://api.test"
        assert execution.api.closed, "a finished run's client is closed"


def test_never_claims_beyond_free_slots(tmp_path: Path) -> None:
    server = FakeServer()
    server.add_runs(*(claimed_run(f"r{i}") for i in range(5)))
    harness = Harness(loaded_config(tmp_path, agent={"max_concurrent_runs": 2}), server)
    wait_for(lambda: len(harness.executions) == 2, timeout=10.0)
    claims_when_full = len([claim for claim in server.claims if claim.slots > 0])
    threading.Event().wait(0.5)  # longer than two poll intervals: a full agent must not claim runs
    assert len([claim for claim in server.claims if claim.slots > 0]) == claims_when_full
    assert server.claims[-1].slots == 0, "a full agent still long-polls (for cancels) with slots = 0"
    assert all(claim.slots <= 2 for claim in server.claims)
    harness.executions[0].finish(StateName.SUCCESS)
    wait_for(lambda: len(harness.executions) == 3, timeout=10.0)
    assert server.claims[-1].slots <= 1 or len(harness.executions) == 3
    assert len(server.waiting) == 2
    harness.inbox.deliver(signal.SIGTERM)
    while harness.thread.is_alive():
        for execution in list(harness.executions):
            execution.finish(StateName.SUCCESS)
        harness.thread.join(0.05)
    assert harness.join() == 0
    assert max(claim.slots for claim in server.claims) == 2


def test_unlimited_agent_asks_for_a_generous_number(tmp_path: Path) -> None:
    server = FakeServer()
    harness = Harness(loaded_config(tmp_path, agent={"max_polls": 1}), server)
    assert harness.join() == 0
    assert server.claims[0].slots == 32


def test_cancel_from_a_claim_reply_cancels_the_run_once(tmp_path: Path) -> None:
    server = FakeServer()
    server.add_runs(claimed_run("r1"), claimed_run("r2"))
    harness = Harness(loaded_config(tmp_path), server)
    wait_for(lambda: len(harness.executions) == 2, timeout=10.0)
    server.cancel("r1")
    wait_for(lambda: harness.executions[0].done.is_set(), timeout=10.0)
    threading.Event().wait(0.3)
    assert harness.executions[0].cancel_messages == ["cancelled on request"]
    assert harness.executions[1].cancel_messages == []
    harness.executions[1].finish(StateName.SUCCESS)
    harness.inbox.deliver(signal.SIGTERM)
    assert harness.join() == 0


def test_a_full_agent_long_polls_with_no_slots_and_gets_a_cancel_from_the_claim_reply(tmp_path: Path) -> None:
    server = FakeServer()
    server.add_runs(claimed_run("r1"), claimed_run("r2"))
    # Heartbeats every 10 s: a cancel arriving well before that came through a claim reply.
    loaded = loaded_config(tmp_path, agent={"max_concurrent_runs": 1, "poll_interval": 30})
    harness = Harness(loaded, server)
    wait_for(lambda: len(harness.executions) == 1, timeout=10.0)
    server.wait_for(lambda: bool(server.claims) and server.claims[-1].slots == 0)
    heartbeats = len(server.heartbeats)
    server.cancel("r1")
    wait_for(lambda: harness.executions[0].done.is_set(), timeout=5.0)
    assert len(server.heartbeats) == heartbeats, "the cancel came with the slots = 0 claim reply"
    wait_for(lambda: len(harness.executions) == 2, timeout=5.0)  # the freed slot claims at once
    harness.executions[1].finish(StateName.SUCCESS)
    harness.inbox.deliver(signal.SIGTERM)
    assert harness.join() == 0


def test_applying_a_config_sends_a_heartbeat_with_the_new_labels_at_once(tmp_path: Path) -> None:
    server = FakeServer()
    first = loaded_config(tmp_path, agent={"labels": ["a"], "hostname_label": False, "poll_interval": 30})
    second = loaded_config(tmp_path, agent={"labels": ["a", "b"], "hostname_label": False, "poll_interval": 30})
    harness = Harness(first, server)
    server.wait_for(lambda: len(server.claims) >= 1)
    assert server.heartbeats == []  # the first periodic heartbeat is 10 s away
    harness.agent.apply_config(second)
    server.wait_for(lambda: len(server.heartbeats) == 1, timeout=5.0)
    assert server.heartbeats[0].labels == ["a", "b"]
    assert server.heartbeats[0].config_generation == 2
    harness.inbox.deliver(signal.SIGTERM)
    assert harness.join() == 0


def test_heartbeat_reports_running_runs_and_config(tmp_path: Path) -> None:
    server = FakeServer()
    server.add_runs(claimed_run("r1"))
    harness = Harness(loaded_config(tmp_path, agent={"labels": ["x"], "hostname_label": False}), server)
    server.wait_for(lambda: any(beat.running_runs == ["r1"] for beat in server.heartbeats))
    beat = server.heartbeats[-1]
    assert beat.labels == ["x"]
    assert beat.config_generation == 1
    assert beat.config_hash == public_hash(harness.agent.loaded)
    assert beat.config_hash != harness.agent.loaded.hash  # the one with secrets never leaves the process
    assert beat.config_error is None
    harness.executions[0].finish(StateName.SUCCESS)
    harness.inbox.deliver(signal.SIGTERM)
    assert harness.join() == 0


def test_a_forgotten_agent_registers_again(tmp_path: Path) -> None:
    server = FakeServer()
    harness = Harness(loaded_config(tmp_path), server)
    server.wait_for(lambda: len(server.registrations) == 1 and len(server.claims) >= 1)
    with server.lock:
        server.forget_agent = True
    server.wait_for(lambda: len(server.registrations) == 2)
    harness.inbox.deliver(signal.SIGTERM)
    assert harness.join() == 0


def test_api_outage_backs_off_and_recovers_while_runs_carry_on(tmp_path: Path) -> None:
    server = FakeServer()
    server.add_runs(claimed_run("r1"))
    harness = Harness(loaded_config(tmp_path, agent={"poll_interval": 2.0}), server)
    wait_for(lambda: len(harness.executions) == 1, timeout=10.0)
    server.down = True
    threading.Event().wait(1.0)
    server.down = False
    # Back-off from 0.25 s, doubling, each delay jittered into its upper half: within 1 s the claim loop
    # tries at most 4 times (at 0, >=0.125, >=0.375, >=0.875 s). Without back-off the fake's instant
    # refusals would be retried thousands of times in that second.
    assert 1 <= server.refused.count("claim") <= 4, server.refused
    server.add_runs(claimed_run("r2"))
    wait_for(lambda: len(harness.executions) == 2, timeout=10.0)
    assert not harness.executions[0].done.is_set(), "the outage did not touch the running run"
    assert harness.executions[0].shutdowns == []
    for execution in harness.executions:
        execution.finish(StateName.SUCCESS)
    harness.inbox.deliver(signal.SIGTERM)
    assert harness.join() == 0
    assert b'localagent_polls_total{result="error"}' in harness.metrics.render()


def test_api_unreachable_at_start_keeps_retrying_registration(tmp_path: Path) -> None:
    server = FakeServer()
    server.down = True
    harness = Harness(loaded_config(tmp_path), server)
    threading.Event().wait(0.3)
    assert server.registrations == []
    server.down = False
    server.wait_for(lambda: len(server.registrations) == 1)
    harness.inbox.deliver(signal.SIGINT)
    assert harness.join() == 0


def test_sigterm_drains_running_runs_then_exits_0(tmp_path: Path) -> None:
    server = FakeServer()
    server.add_runs(claimed_run("r1"))
    harness = Harness(loaded_config(tmp_path), server)
    wait_for(lambda: len(harness.executions) == 1, timeout=10.0)
    harness.inbox.deliver(signal.SIGTERM)
    claims_at_signal = len([claim for claim in server.claims if claim.slots > 0])
    threading.Event().wait(0.4)
    assert harness.thread.is_alive(), "the agent waits for the running run"
    assert len([claim for claim in server.claims if claim.slots > 0]) <= claims_at_signal + 1, "no claims of runs"
    assert server.claims[-1].slots == 0, "while draining, the agent still long-polls for cancels"
    server.add_runs(claimed_run("late"))
    harness.executions[0].finish(StateName.SUCCESS)
    assert harness.join() == 0
    assert harness.executions[0].shutdowns == []
    assert harness.started_ids() == ["r1"]


def test_drain_timeout_stops_the_rest_and_exits_143(tmp_path: Path) -> None:
    server = FakeServer()
    server.add_runs(claimed_run("r1"))
    harness = Harness(loaded_config(tmp_path, runs={"drain_timeout": 0.3}), server)
    wait_for(lambda: len(harness.executions) == 1, timeout=10.0)
    harness.inbox.deliver(signal.SIGTERM)
    wait_for(lambda: harness.executions[0].shutdowns, timeout=10.0)
    assert harness.executions[0].shutdowns == [("agent shut down", False)]
    harness.executions[0].finish(StateName.CANCELLED)
    assert harness.join() == 143


def test_second_signal_stops_runs_at_once(tmp_path: Path) -> None:
    server = FakeServer()
    server.add_runs(claimed_run("r1"))
    harness = Harness(loaded_config(tmp_path), server)
    wait_for(lambda: len(harness.executions) == 1, timeout=10.0)
    harness.inbox.deliver(signal.SIGTERM)
    threading.Event().wait(0.2)
    harness.inbox.deliver(signal.SIGINT)
    wait_for(lambda: harness.executions[0].shutdowns, timeout=10.0)
    assert harness.executions[0].shutdowns == [("agent shut down", True)]
    harness.executions[0].finish(StateName.CANCELLED)
    assert harness.join() == 130


def test_sighup_applies_a_new_config_to_the_next_claim(tmp_path: Path) -> None:
    server = FakeServer()
    first = loaded_config(tmp_path, agent={"labels": ["a"], "hostname_label": False})
    second = loaded_config(
        tmp_path, agent={"labels": ["a", "b"], "hostname_label": False}, logs={"show_flow_logs": True}
    )
    configs = [second]
    harness = Harness(first, server, load=lambda: configs[0])
    server.wait_for(lambda: len(server.claims) >= 1)
    assert harness.console.enabled is False
    harness.inbox.deliver(signal.SIGHUP)
    server.wait_for(lambda: server.claims[-1].labels == ["a", "b"])
    assert harness.agent.generation == 2
    assert harness.console.enabled is True
    server.wait_for(lambda: server.heartbeats and server.heartbeats[-1].config_generation == 2)
    harness.inbox.deliver(signal.SIGTERM)
    assert harness.join() == 0
    assert b"localagent_reloads_total 1.0" in harness.metrics.render()


def test_invalid_reload_keeps_the_last_good_config_and_reports_the_error(tmp_path: Path) -> None:
    server = FakeServer()
    loaded = loaded_config(tmp_path, agent={"labels": ["a"], "hostname_label": False})
    problem = ConfigProblem(
        source="agent.toml", key="agent.max_concurrent_runs", message="must be >= 0, got -1", line=7
    )

    def broken_load() -> LoadedConfig:
        raise ConfigError([problem])

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("localagent.agent").addHandler(handler)
    harness = Harness(loaded, server, load=broken_load)
    server.wait_for(lambda: len(server.claims) >= 1)
    harness.inbox.deliver(signal.SIGHUP)
    expected = "agent.toml:7: agent.max_concurrent_runs: must be >= 0, got -1"
    server.wait_for(lambda: bool(server.heartbeats) and server.heartbeats[-1].config_error == expected)
    assert harness.agent.generation == 1
    assert server.claims[-1].labels == ["a"]
    _healthy, body = harness.agent.health_report()
    assert body["config"]["error"] == expected
    harness.inbox.deliver(signal.SIGTERM)
    assert harness.join() == 0
    assert b"localagent_reload_errors_total 1.0" in harness.metrics.render()
    logging.getLogger("localagent.agent").removeHandler(handler)
    (message,) = [r.getMessage() for r in records if "refused" in r.getMessage()]
    assert message.splitlines() == [
        "config reload refused, keeping generation 1:",
        "agent.toml:7: agent.max_concurrent_runs: must be >= 0, got -1",
        "config is invalid: 1 problem",
    ]


def test_a_new_api_url_moves_claims_but_not_started_runs(tmp_path: Path) -> None:
    server = FakeServer()
    server.add_runs(claimed_run("r1"))
    first = loaded_config(tmp_path)
    second = dataclasses.replace(
        first,
        config=first.config.model_copy(
            update={"api": first.config.api.model_copy(update={"url": "http://other.test"})}
        ),
    )
    harness = Harness(first, server)
    wait_for(lambda: len(harness.executions) == 1, timeout=10.0)
    harness.agent.apply_config(second)
    server.wait_for(lambda: len(server.registrations) == 2)  # registered again on the new API
    assert server.registrations[1].name == "a1"
    server.add_runs(claimed_run("r2"))
    wait_for(lambda: len(harness.executions) == 2, timeout=10.0)
    assert harness.executions[0].api.url == "http://api.test"
    assert harness.executions[1].api.url == "http://other.test"

    def beats(url: str) -> list[tuple[str, list[str]]]:
        return [(agent_id, beat.running_runs) for to, agent_id, beat in list(server.beats_to) if to == url]

    # The old API keeps getting heartbeats from the old registration, listing only the run it handed out.
    server.wait_for(lambda: ("agent-2", ["r2"]) in beats("http://other.test"))
    server.wait_for(lambda: ("agent-1", ["r1"]) in beats("http://api.test"))
    assert {tuple(runs) for _, runs in beats("http://other.test")} <= {(), ("r2",)}
    harness.executions[0].finish(StateName.SUCCESS)
    wait_for(lambda: harness.agent.health_report()[1]["api"]["left_behind"] == [], timeout=10.0)
    old_beats = len(beats("http://api.test"))
    server.wait_for(lambda: len(beats("http://other.test")) >= 3)  # a few more heartbeats: none to the old API
    assert len(beats("http://api.test")) == old_beats
    assert all(runs == ["r1"] for _, runs in beats("http://api.test")[1:])
    harness.executions[1].finish(StateName.SUCCESS)
    harness.inbox.deliver(signal.SIGTERM)
    assert harness.join() == 0


def test_a_run_that_cannot_be_built_is_reported_failed(tmp_path: Path) -> None:
    server = FakeServer()
    server.add_runs(claimed_run("r1"))
    inbox = SignalInbox()

    def exploding_factory(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    loaded = loaded_config(tmp_path, agent={"max_polls": 2})
    agent = Agent(
        loaded,
        reaper=object(),  # type: ignore[arg-type]
        console=FakeConsole(),  # type: ignore[arg-type]
        metrics=AgentMetrics(),
        inbox=inbox,
        client_factory=server.client_factory,  # type: ignore[arg-type]
        execution_factory=exploding_factory,
    )
    assert agent.run() == 0
    run_id, update, key = server.states[0]
    assert (run_id, update.state, key) == ("r1", StateName.FAILED, "token-r1")
    assert "boom" in update.message


def test_max_polls_then_waits_for_runs_to_finish(tmp_path: Path) -> None:
    server = FakeServer()
    server.add_runs(claimed_run("r1"))
    harness = Harness(loaded_config(tmp_path, agent={"max_polls": 1}), server)
    wait_for(lambda: len(harness.executions) == 1, timeout=10.0)
    threading.Event().wait(0.3)
    assert harness.thread.is_alive()
    harness.executions[0].finish(StateName.SUCCESS)
    assert harness.join() == 0
    assert len(server.claims) == 1


def test_sigterm_while_the_api_is_unreachable_exits_0(tmp_path: Path) -> None:
    server = FakeServer()
    server.down = True
    harness = Harness(loaded_config(tmp_path), server)
    threading.Event().wait(0.3)
    harness.inbox.deliver(signal.SIGTERM)
    assert harness.join() == 0
    assert server.registrations == []


def test_runs_handed_out_after_shutdown_are_reported_cancelled_not_started(tmp_path: Path) -> None:
    server = FakeServer()
    executions: list[FakeExecution] = []
    table = RunTable(
        execution_factory=functools.partial(FakeExecution, log=executions),
        reaper=object(),  # type: ignore[arg-type]
        console=FakeConsole(),  # type: ignore[arg-type]
        metrics=AgentMetrics(),
        on_change=lambda: None,
    )
    config = loaded_config(tmp_path).config
    table.close_intake()
    table.start(
        [claimed_run("late")],
        config,
        lambda claimed: server.client_factory("http://api.test", claimed.token, 1),
        RunOrigin("http://api.test", "http://api.test"),
    )
    assert executions == []
    ((run_id, update, key),) = server.states
    assert (run_id, update.state, update.message, key) == ("late", StateName.CANCELLED, "agent shut down", "token-late")
    assert server.clients[0].closed
