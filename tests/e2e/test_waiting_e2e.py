"""End to end with real ``localagent run`` agents: why a run waits; ``agent ls`` across a clean stop and a restart."""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from localagent.api.client import ApiClient
from localagent.api.models import FlowRunCreate, FlowSpec, StateName
from localagent.server.runner import ServerThread
from tests.cli.api_cli_support import cli, cli_env
from tests.e2e.support import LOCALAGENT, Agent, wait_for, wait_state


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        agent.kill()


def test_the_default_agent_and_an_unlabeled_run_the_watch_says_why(
    tmp_path: Path, api_server: ServerThread, agents: list[Agent]
) -> None:
    """The issue's walk-through: the default agent takes its host name as a label, so an unlabeled run waits."""
    url = api_server.url
    host = socket.gethostname()
    labelled = Agent(tmp_path, "default-agent", {"api": {"url": url}, "agent": {"hostname_label": True}})
    agents.append(labelled)
    with ApiClient(url) as api:
        labelled.wait_registered(api)
        api.register_flow(FlowSpec(name="hello", command="echo hi"))
    watch = subprocess.Popen(
        [LOCALAGENT, "flow", "run", "hello", "--watch"],
        env=cli_env(url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watch.stderr is not None
        line = next(line for line in watch.stderr if "waiting: " in line)
        assert "the run has no labels and no online agent takes unlabeled runs" in line
        assert f"default-agent [{host}]" in line
        assert line.rstrip().endswith("(unlabeled_run)")
        # An agent that takes unlabeled runs comes up: the watch ends with the run's output.
        loose = Agent(tmp_path, "loose-agent", {"api": {"url": url}, "agent": {"run_unlabeled": True}})
        agents.append(loose)
        out, err = watch.communicate(timeout=60)
    finally:
        watch.kill()
    assert watch.returncode == 0, err
    assert out.splitlines() == ["hi"]


def test_every_matching_agent_full_then_a_clean_stop_and_a_restart(
    tmp_path: Path, api_server: ServerThread, agents: list[Agent]
) -> None:
    url = api_server.url
    marker = tmp_path / "go"
    sections = {"api": {"url": url}, "agent": {"run_unlabeled": True, "max_concurrent_runs": 1}}
    agent = Agent(tmp_path, "one-slot", sections)
    agents.append(agent)
    with ApiClient(url) as api:
        agent.wait_registered(api)
        api.register_flow(FlowSpec(name="hold", command=f"while [ ! -e {marker} ]; do sleep 0.05; done"))
        first = api.create_run(FlowRunCreate(flow="hold"))
        wait_state(api, first.id, [StateName.RUNNING])
        second = api.create_run(FlowRunCreate(flow="hold"))
        waiting = wait_for(lambda: api.get_run(second.id).waiting, what="a reason")
        assert waiting.reason == "agents_busy"
        assert waiting.message == "every agent that takes this run is at its max_concurrent_runs: one-slot runs 1 of 1"
        shown = cli(url, "flow-run", "show", second.name)
        assert "waiting:" in shown.stdout and "(agents_busy)" in shown.stdout
        marker.touch()
        wait_state(api, second.id, [StateName.SUCCESS])
        (record,) = api.list_agents()
        assert record.max_concurrent_runs == 1
        # A clean stop: listed stopped, not lost.
        agent.signal(signal.SIGTERM)
        assert agent.wait() == 0
        (stopped,) = api.list_agents()
        assert stopped.id == record.id
        assert stopped.stopped is not None
        assert stopped.lost is False
        listed = cli(url, "agent", "ls")
        assert " stopped " in listed.stdout.splitlines()[1]
        third = api.create_run(FlowRunCreate(flow="hold"))
        gone = api.get_run(third.id).waiting
        assert gone is not None
        assert gone.reason == "no_agent"
        assert gone.message.startswith("no agent is online: the last one, one-slot")
        assert " stopped at " in gone.message
        # The same agent started again takes over its record: one row, the same id, online.
        again = Agent(tmp_path, "one-slot", sections)
        agents.append(again)
        again.wait_registered(api)
        wait_state(api, third.id, [StateName.SUCCESS])
        (restarted,) = api.list_agents()
        assert restarted.id == record.id
        assert restarted.stopped is None
        assert len(api.list_agents(history=True)) == 1
        again.signal(signal.SIGTERM)
        assert again.wait() == 0
