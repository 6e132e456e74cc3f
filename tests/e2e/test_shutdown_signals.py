"""Second and third stop signals against a real agent process: stop_signal and grace, then SIGKILL at once."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from localagent.api.client import ApiClient
from localagent.api.models import FlowRunCreate, FlowSpec, LogLine, StateName
from localagent.server.runner import ServerThread
from tests.e2e.support import Agent, wait_for, wait_state

# Prints each SIGTERM it gets and keeps running: only SIGKILL ends it.
STUBBORN = """
import signal, sys, time
def note(signum, frame):
    print("got", signal.Signals(signum).name, flush=True)
signal.signal(signal.SIGTERM, note)
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        agent.kill()


def _texts(lines: list[LogLine]) -> list[str]:
    return [line.text for line in lines]


def _start(tmp_path: Path, url: str, agents: list[Agent], grace: str) -> tuple[Agent, ApiClient, str]:
    runs = {"stop_grace": grace, "drain_timeout": "5m"}
    agent = Agent(tmp_path, "stopper", {"api": {"url": url}, "agent": {"run_unlabeled": True}, "runs": runs})
    agents.append(agent)
    api = ApiClient(url)
    agent.wait_registered(api)
    api.register_flow(FlowSpec(name="stubborn", command=[sys.executable, "-c", STUBBORN]))
    run = api.create_run(FlowRunCreate(flow="stubborn"))
    wait_state(api, run.id, [StateName.RUNNING])
    wait_for(lambda: "ready" in _texts(api.read_logs(run.id).lines), what="the run to be ready")
    agent.signal(signal.SIGTERM)
    wait_for(lambda: "draining 1 running run" in agent.stderr, what="the drain log line")
    return agent, api, run.id


def test_second_signal_sends_stop_signal_then_sigkill_after_grace(
    tmp_path: Path, api_server: ServerThread, agents: list[Agent]
) -> None:
    agent, api, run_id = _start(tmp_path, api_server.url, agents, "1s")
    with api:
        agent.signal(signal.SIGTERM)
        assert agent.wait(60) == 143
        final = api.get_run(run_id)
        assert (final.state, final.state_message) == (StateName.CANCELLED, "agent shut down")
        assert final.exit_code == -signal.SIGKILL, "it ignored SIGTERM, so the grace ended with SIGKILL"
        assert "got SIGTERM" in _texts(api.read_logs(run_id).lines), "the run was sent runs.stop_signal first"
    assert "received SIGTERM again: stopping 1 run(s) now (SIGTERM, SIGKILL after 1s" in agent.stderr


def test_third_signal_kills_at_once(tmp_path: Path, api_server: ServerThread, agents: list[Agent]) -> None:
    agent, api, run_id = _start(tmp_path, api_server.url, agents, "10m")
    with api:
        agent.signal(signal.SIGINT)
        wait_for(lambda: "got SIGTERM" in _texts(api.read_logs(run_id).lines), what="stop_signal to reach the run")
        agent.signal(signal.SIGINT)
        assert agent.wait(60) == 130, "a 10 minute grace was cut short by the third signal"
        final = api.get_run(run_id)
        assert (final.state, final.exit_code) == (StateName.CANCELLED, -signal.SIGKILL)
    assert "killing 1 run(s) at once (SIGKILL)" in agent.stderr
