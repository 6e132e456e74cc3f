"""End to end: a real `localagent run` follows its config file while runs come and go."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from localagent.api.client import ApiClient
from localagent.api.models import Agent, FlowRunCreate, FlowSpec, StateName
from tests.reload.agent_process import AgentProcess, localagent_command
from tests.support.runs import all_logs
from tests.support.wait import wait_for

FINAL = {StateName.SUCCESS, StateName.FAILED, StateName.CANCELLED, StateName.CRASHED}


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    with AgentProcess(tmp_path, labels=["base"]) as process:
        yield process


@pytest.fixture
def api(agent: AgentProcess) -> Iterator[ApiClient]:
    with agent.client() as client:
        yield client


def run_state(api: ApiClient, run_id: str) -> StateName:
    return api.get_run(run_id).state


def wait_final(api: ApiClient, run_id: str, timeout: float = 30.0) -> StateName:
    wait_for(lambda: run_state(api, run_id) in FINAL, timeout=timeout, what=f"run {run_id} to finish")
    return run_state(api, run_id)


def wait_polls(agent: AgentProcess, count: int = 2) -> None:
    """Let ``count`` more claim polls end: the one in flight (asked with the config before), then a new one."""
    target = agent.polls() + count
    wait_for(lambda: agent.polls() >= target, what=f"{count} more polls")


def listed(api: ApiClient) -> Agent:
    """This agent as the API lists it (what `localagent agent ls` prints)."""
    return next(entry for entry in api.list_agents() if entry.name == "reload-test" and not entry.lost)


def agent_ls(agent: AgentProcess) -> list[dict[str, object]]:
    result = subprocess.run(
        [*localagent_command(), "agent", "ls", "--json", "--api", agent.api_url],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    listed: list[dict[str, object]] = json.loads(result.stdout)
    return [entry for entry in listed if entry["name"] == "reload-test" and not entry["lost"]]


def test_a_label_added_by_an_atomic_save_takes_the_waiting_run(agent: AgentProcess, api: ApiClient) -> None:
    api.register_flow(FlowSpec(name="gpu-job", command=["true"], labels=["gpu"]))
    run = api.create_run(FlowRunCreate(flow="gpu-job"))
    wait_polls(agent)
    assert run_state(api, run.id) == StateName.SCHEDULED  # the agent lacks the label: the run waits

    agent.save(labels=["base", "gpu"])
    assert wait_final(api, run.id) == StateName.SUCCESS
    health = agent.health()
    assert health["config"]["generation"] == 2
    assert health["agent"]["labels"] == ["base", "gpu"]
    assert health["config"]["error"] is None
    assert "config generation 2: agent.labels ['base'] -> ['base', 'gpu']" in agent.log()
    wait_for(lambda: listed(api).config_generation == 2, what="the API to know generation 2")
    shown = agent_ls(agent)[0]
    assert shown["labels"] == ["base", "gpu"]
    assert shown["config_generation"] == 2
    assert shown["config_hash"] == health["config"]["hash"]


def test_a_syntax_error_keeps_the_agent_running_until_the_file_is_restored(agent: AgentProcess, api: ApiClient) -> None:
    good = agent.config.read_text()
    with agent.config.open("a") as handle:
        handle.write("labels = = [\n")
    wait_for(lambda: agent.health()["config"]["error"] is not None, what="/health to report the error")
    error = agent.health()["config"]["error"]
    assert "agent.toml:" in error
    assert agent.health()["config"]["generation"] == 1
    wait_for(lambda: listed(api).config_error is not None, what="the API to know the error")
    assert "agent.toml:" in str(agent_ls(agent)[0]["config_error"])

    api.register_flow(FlowSpec(name="still-going", command=["true"], labels=["base"]))
    run = api.create_run(FlowRunCreate(flow="still-going"))
    assert wait_final(api, run.id) == StateName.SUCCESS
    assert agent.alive()

    agent.config.write_text(good)
    wait_for(lambda: agent.health()["config"]["error"] is None, what="the error to clear")
    assert agent.health()["config"]["generation"] == 1, "the same content is back: no new generation"
    wait_for(lambda: listed(api).config_error is None, what="the API to clear the error")


def test_labels_changed_while_runs_are_running(agent: AgentProcess, api: ApiClient, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    api.register_flow(FlowSpec(name="slow", command=f"while [ ! -e {gate} ]; do sleep 0.05; done", labels=["base"]))
    api.register_flow(FlowSpec(name="quick-base", command=["true"], labels=["base"]))
    api.register_flow(FlowSpec(name="quick-new", command=["true"], labels=["new"]))
    running = [api.create_run(FlowRunCreate(flow="slow")).id for _ in range(2)]
    wait_for(
        lambda: all(run_state(api, run_id) == StateName.RUNNING for run_id in running), what="the slow runs to start"
    )

    agent.save(labels=["new"])
    wait_for(lambda: agent.health()["agent"]["labels"] == ["new"], what="the new labels")
    wait_polls(agent)  # a long poll already waiting was asked with the old labels: new ones apply from the next
    old_label_run = api.create_run(FlowRunCreate(flow="quick-base")).id
    new_label_run = api.create_run(FlowRunCreate(flow="quick-new")).id
    assert wait_final(api, new_label_run) == StateName.SUCCESS
    assert [run_state(api, run_id) for run_id in running] == [StateName.RUNNING, StateName.RUNNING]

    gate.touch()
    assert [wait_final(api, run_id) for run_id in running] == [StateName.SUCCESS, StateName.SUCCESS]
    wait_polls(agent)
    assert run_state(api, old_label_run) == StateName.SCHEDULED


def test_reloads_during_a_stream_of_300_runs_lose_no_run(agent: AgentProcess, api: ApiClient) -> None:
    api.register_flow(FlowSpec(name="tick", command=["true"], labels=["base"]))
    run_ids: list[str] = []
    for batch in range(10):
        run_ids.extend(api.create_run(FlowRunCreate(flow="tick")).id for _ in range(30))
        agent.save(labels=["base", f"extra-{batch}"], extra=f"[logs]\nshow_flow_logs = {str(batch % 2 == 0).lower()}\n")
    wait_for(lambda: agent.health()["agent"]["labels"] == ["base", "extra-9"], what="the last reload")
    for run_id in run_ids:
        assert wait_final(api, run_id, timeout=60) == StateName.SUCCESS
    assert agent.health()["config"]["error"] is None
    assert agent.alive()


def test_a_reload_during_a_waiting_claim_applies_to_the_runs_that_claim_hands_out(tmp_path: Path) -> None:
    """Issue 18: the runs of a claim asked before a reload start with the config in force when it returns."""
    before = '[logs]\nmax_run_output = "1KiB"\n[runs.env]\nGREETING = "old"\n'
    after = '[logs]\nmax_run_output = 0\n[runs.env]\nGREETING = "new"\n'
    with AgentProcess(tmp_path, labels=["base"], poll_interval="60s", extra=before) as agent, agent.client() as api:
        api.register_flow(FlowSpec(name="talk", command='echo "$GREETING"; seq 1 3000', labels=["base"]))
        wait_for(lambda: agent.polls() >= 1, what="the first claim to be answered")  # the next one now waits
        agent.save(labels=["base"], extra=after)
        wait_for(lambda: agent.health()["config"]["generation"] == 2, what="the reload")
        polls = agent.polls()
        run = api.create_run(FlowRunCreate(flow="talk"))
        assert wait_final(api, run.id) == StateName.SUCCESS
        assert agent.polls() == polls + 1  # the run came with the claim that was waiting during the reload
        texts = [line.text for line in all_logs(api, run.id) if line.stream == "stdout"]
    assert texts == ["new", *(str(i) for i in range(1, 3001))]  # the new env, and no 1 KiB cut
