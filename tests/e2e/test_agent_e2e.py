"""End to end through the installed ``localagent`` binary: the quick start, labels, console output, signals."""

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
from tests.e2e.support import LOCALAGENT, Agent, wait_for, wait_state, write_config
from tests.ports import free_port


@pytest.fixture
def server_url(api_server: ServerThread) -> str:
    """A separate API (the in-process test server: the agents under test are real subprocesses)."""
    return api_server.url


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[str, list[Agent]]]:
    """The url an embedded agent will serve on, and a list that stops every agent started at the end."""
    agents: list[Agent] = []
    yield f"http://127.0.0.1:{free_port()}", agents
    for agent in agents:
        agent.kill()


def start_embedded(tmp_path: Path, url: str, agents: list[Agent], name: str = "a1", **sections: dict) -> Agent:
    address = url.removeprefix("http://")
    config = {"api": {"url": "embedded"}, "server": {"address": address}, **sections}
    agent = Agent(tmp_path, name, config)
    agents.append(agent)
    return agent


def test_quick_start_hello_prints_hi_and_shows_flow_logs(tmp_path: Path, embedded: tuple[str, list[Agent]]) -> None:
    url, agents = embedded
    agent = start_embedded(tmp_path, url, agents, agent={"run_unlabeled": True}, logs={"show_flow_logs": True})
    with ApiClient(url) as api:
        agent.wait_registered(api)
    env = {"LOCALAGENT_API_URL": url, "PATH": "/usr/bin:/bin:" + str(Path(LOCALAGENT).parent)}
    register = subprocess.run(
        [LOCALAGENT, "flow", "register", "hello", "--command", "echo hi"], env=env, capture_output=True, text=True
    )
    assert register.returncode == 0, register.stderr
    watch = subprocess.run(
        [LOCALAGENT, "flow", "run", "hello", "--watch"], env=env, capture_output=True, text=True, timeout=60
    )
    assert watch.returncode == 0, watch.stderr
    assert "hi" in watch.stdout.splitlines()
    with ApiClient(url) as api:
        (run,) = api.list_runs(flow="hello")
    assert run.state == StateName.SUCCESS
    wait_for(lambda: f"[hello/{run.name}] hi" in agent.stdout, what="the prefixed line on the agent's stdout")
    # SIGTERM with nothing running: a clean, prompt exit.
    agent.signal(signal.SIGTERM)
    assert agent.wait(timeout=20) == 0
    assert "agent stopped" in agent.stderr


def test_label_rule_and_run_unlabeled(tmp_path: Path, embedded: tuple[str, list[Agent]]) -> None:
    url, agents = embedded
    etl = start_embedded(tmp_path, url, agents, "etl-agent", agent={"labels": ["etl"]})
    with ApiClient(url) as api:
        etl.wait_registered(api)
        api.register_flow(FlowSpec(name="etl-job", command=["echo", "etl-output"], labels=["etl"]))
        api.register_flow(FlowSpec(name="gpu-job", command=["true"], labels=["gpu"]))
        api.register_flow(FlowSpec(name="plain", command=["true"]))
        gpu_run = api.create_run(FlowRunCreate(flow="gpu-job"))
        plain_run = api.create_run(FlowRunCreate(flow="plain"))
        etl_run = api.create_run(FlowRunCreate(flow="etl-job"))
        done = wait_state(api, etl_run.id, [StateName.SUCCESS, StateName.FAILED])
        assert done.state == StateName.SUCCESS
        assert done.agent_name == "etl-agent"
        # The claim that took the etl run scanned the two runs scheduled before it and passed them over:
        # neither the foreign label nor the unlabeled run was taken.
        assert api.get_run(gpu_run.id).state == StateName.SCHEDULED
        assert api.get_run(plain_run.id).state == StateName.SCHEDULED
        # show_flow_logs is off: the run's output is not on the agent's console.
        assert "etl-output" not in etl.stdout
        # A second agent (no labels, run_unlabeled) on the same API takes the unlabeled run only.
        loose = Agent(tmp_path, "loose-agent", {"api": {"url": url}, "agent": {"run_unlabeled": True}})
        agents.append(loose)
        assert wait_state(api, plain_run.id, [StateName.SUCCESS]).agent_name == "loose-agent"
        assert api.get_run(gpu_run.id).state == StateName.SCHEDULED
    for agent in (loose, etl):
        agent.signal(signal.SIGTERM)
        assert agent.wait() == 0


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        agent.kill()


def test_sigterm_drains_a_running_run(tmp_path: Path, server_url: str, agents: list[Agent]) -> None:
    marker = tmp_path / "go"
    agent = Agent(tmp_path, "drainer", {"api": {"url": server_url}, "agent": {"run_unlabeled": True}})
    agents.append(agent)
    with ApiClient(server_url) as api:
        agent.wait_registered(api)
        command = f"while [ ! -e {marker} ]; do sleep 0.05; done; echo drained"
        api.register_flow(FlowSpec(name="slow", command=command))
        run = api.create_run(FlowRunCreate(flow="slow"))
        wait_state(api, run.id, [StateName.RUNNING])
        agent.signal(signal.SIGTERM)
        wait_for(lambda: "draining 1 running run" in agent.stderr, what="the drain log line")
        assert agent.popen.poll() is None, "the agent waits for the running run"
        marker.touch()
        assert agent.wait() == 0
        assert api.get_run(run.id).state == StateName.SUCCESS
        assert [line.text for line in api.read_logs(run.id).lines] == ["drained"]


@pytest.mark.parametrize(
    ("runs", "second_signal", "exit_code"),
    [({"stop_grace": "30s"}, signal.SIGINT, 130), ({"drain_timeout": "0.5s", "stop_grace": "5s"}, None, 143)],
    ids=["second-signal", "drain-timeout"],
)
def test_runs_stopped_on_shutdown_end_cancelled(
    tmp_path: Path,
    server_url: str,
    agents: list[Agent],
    runs: dict[str, str],
    second_signal: signal.Signals | None,
    exit_code: int,
) -> None:
    agent = Agent(tmp_path, "stopper", {"api": {"url": server_url}, "agent": {"run_unlabeled": True}, "runs": runs})
    agents.append(agent)
    with ApiClient(server_url) as api:
        agent.wait_registered(api)
        api.register_flow(FlowSpec(name="long", command=["sleep", "60"]))
        run = api.create_run(FlowRunCreate(flow="long"))
        wait_state(api, run.id, [StateName.RUNNING])
        agent.signal(signal.SIGTERM)
        if second_signal is not None:
            wait_for(lambda: "draining 1 running run" in agent.stderr, what="the drain log line")
            agent.signal(second_signal)
        assert agent.wait() == exit_code
        final = api.get_run(run.id)
        assert final.state == StateName.CANCELLED
        assert final.state_message == "agent shut down"


def test_startup_failures_exit_3_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = f"127.0.0.1:{blocker.getsockname()[1]}"
        config = write_config(
            tmp_path / "busy.toml", {"agent": {"state_dir": str(tmp_path / "s")}, "server": {"address": busy}}
        )
        result = subprocess.run([LOCALAGENT, "run", "-c", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        f"ServiceError: the embedded API cannot listen on {busy}: the address is already in use; "
        "stop what listens there, or change server.address (or point api.url at a running API)"
    ]
    blocked = tmp_path / "file"
    blocked.write_text("")
    config = write_config(tmp_path / "bad.toml", {"agent": {"state_dir": str(blocked / "state")}})
    result = subprocess.run([LOCALAGENT, "run", "-c", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert result.stderr.startswith(f"ServiceError: cannot create agent.state_dir {blocked / 'state'}")
