"""End to end: a reload moves the agent to another API (or moves the embedded one) while runs carry on."""

from __future__ import annotations

import time
from pathlib import Path

from localagent.api.client import ApiClient
from localagent.api.models import FlowRunCreate, FlowSpec, StateName
from localagent.errors import ApiError, ApiUnauthorized
from tests.conftest import MakeApiServer
from tests.ports import free_port
from tests.reload.agent_process import AgentProcess
from tests.support import runs
from tests.support.wait import wait_for

FINAL = {StateName.SUCCESS, StateName.FAILED, StateName.CANCELLED, StateName.CRASHED}


def gated(gate: Path) -> str:
    return f"while [ ! -e {gate} ]; do sleep 0.05; done"


def wait_state(api: ApiClient, run_id: str, states: set[StateName], timeout: float = 20.0) -> StateName:
    return runs.wait_state(api, run_id, states, timeout).state


def test_a_new_api_url_claims_there_while_the_old_api_keeps_its_runs_alive(
    tmp_path: Path, make_api_server: MakeApiServer
) -> None:
    # agent_timeout 1 s: without heartbeats the old API would crash its run long before it ends.
    old_server = make_api_server(agent_timeout=1.0, sweep_interval=0.2)
    new_server = make_api_server(agent_timeout=1.0, sweep_interval=0.2)
    gate = tmp_path / "gate"
    with (
        AgentProcess(tmp_path, labels=["pool"], poll_interval="0.5s", api=old_server.url) as agent,
        ApiClient(old_server.url) as old,
        ApiClient(new_server.url) as new,
    ):
        old.register_flow(FlowSpec(name="slow", command=gated(gate), labels=["pool"]))
        new.register_flow(FlowSpec(name="quick", command=["true"], labels=["pool"]))
        slow = old.create_run(FlowRunCreate(flow="slow"))
        assert wait_state(old, slow.id, {StateName.RUNNING}) == StateName.RUNNING
        old_agent = next(entry for entry in old.list_agents() if entry.name == "reload-test")

        agent.api = new_server.url
        agent.save(labels=["pool"])
        quick = new.create_run(FlowRunCreate(flow="quick"))
        assert wait_state(new, quick.id, FINAL) == StateName.SUCCESS
        assert agent.health()["api"] == {
            "url": new_server.url,
            "urls": [new_server.url],
            "embedded": False,
            "left_behind": [old_server.url],
        }
        # Well past agent_timeout the old API still has the agent alive and the run running.
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            assert old.get_run(slow.id).state == StateName.RUNNING
            time.sleep(0.2)
        assert not next(entry for entry in old.list_agents() if entry.id == old_agent.id).lost
        old.register_flow(FlowSpec(name="stays", command=["true"], labels=["pool"]))
        stays = old.create_run(FlowRunCreate(flow="stays"))

        gate.touch()
        assert wait_state(old, slow.id, FINAL) == StateName.SUCCESS
        # The last run of the old API ended: no more heartbeats there, so it soon marks the agent lost.
        wait_for(lambda: agent.health()["api"]["left_behind"] == [], what="the old API to be let go")
        wait_for(lambda: next(e for e in old.list_agents() if e.id == old_agent.id).lost, what="the old API to drop us")
        assert old.get_run(stays.id).state == StateName.SCHEDULED  # new claims never went to the old API
        assert old.get_run(slow.id).state == StateName.SUCCESS
    assert "no more heartbeats to the previous API" in agent.log()


def test_the_embedded_api_moves_and_rekeys_without_losing_a_run_or_the_agent_id(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with AgentProcess(tmp_path, labels=["base"], poll_interval="0.5s") as agent:
        first_url = agent.api_url
        with ApiClient(first_url) as api:
            api.register_flow(FlowSpec(name="slow", command=gated(gate) + "; echo done", labels=["base"]))
            api.register_flow(FlowSpec(name="quick", command=["true"], labels=["base"]))
            slow = api.create_run(FlowRunCreate(flow="slow"))
            assert wait_state(api, slow.id, {StateName.RUNNING}) == StateName.RUNNING
            agent_id = agent.health()["agent"]["id"]

        agent.api_port = free_port()
        agent.save(labels=["base"])
        wait_for(lambda: agent.health()["api"]["url"] == agent.api_url, what="the agent to follow the new address")
        with ApiClient(agent.api_url) as moved:
            quick = moved.create_run(FlowRunCreate(flow="quick"))
            assert wait_state(moved, quick.id, FINAL) == StateName.SUCCESS
            assert agent.health()["agent"]["id"] == agent_id  # same database: same agent, nothing crashed
            assert [entry.id for entry in moved.list_agents() if not entry.lost] == [agent_id]
            assert moved.get_run(slow.id).state == StateName.RUNNING
        # The old listener still serves the run it handed out (its LOCALAGENT_API_URL points there) ...
        with ApiClient(first_url, retries=0) as old:
            assert old.get_run(slow.id).state == StateName.RUNNING
            gate.touch()
            assert wait_state(old, slow.id, FINAL) == StateName.SUCCESS
            assert [line.text for line in old.read_logs(slow.id).lines] == ["done"]

            # ... and stops once no run reports to it.
            def old_listener_gone() -> bool:
                try:
                    old.health()
                except ApiError:
                    return True
                return False

            wait_for(old_listener_gone, what="the old listener to stop")

        agent.api_key = "rotated-key"
        agent.save(labels=["base"])
        with ApiClient(agent.api_url, retries=0) as keyless:

            def refuses_keyless() -> bool:
                try:
                    keyless.list_flows()
                except ApiUnauthorized:
                    return True
                except ApiError:
                    return False  # restarting with the new key
                return False

            wait_for(refuses_keyless, what="the embedded API to require the new key")
        with agent.client() as keyed:
            quick = keyed.create_run(FlowRunCreate(flow="quick"))
            assert wait_state(keyed, quick.id, FINAL) == StateName.SUCCESS
            assert [entry.id for entry in keyed.list_agents() if not entry.lost] == [agent_id]
        assert agent.health()["config"]["error"] is None
    log = agent.log()
    assert "embedded API moved to" in log
    assert "embedded API restarted on" in log


def test_a_label_added_while_a_long_poll_waits_is_taken_well_within_the_poll_interval(tmp_path: Path) -> None:
    """The acceptance check of hot reload, with the default poll_interval of 10 s.

    The agent sends a heartbeat with the new labels at once; the API ends a claim long-poll whose labels
    no longer match the agent's, so the next claim (with the new labels) takes the run.
    """
    with AgentProcess(tmp_path, labels=["base"], poll_interval="10s") as agent, agent.client() as api:
        api.register_flow(FlowSpec(name="gpu-job", command=["true"], labels=["gpu"]))
        run = api.create_run(FlowRunCreate(flow="gpu-job"))  # wakes the long poll: it does not match
        assert api.get_run(run.id).state == StateName.SCHEDULED
        agent.save(labels=["base", "gpu"])
        # A deadline well under poll_interval: the run must not wait for the old long-poll to time out.
        wait_state(api, run.id, {StateName.SUBMITTED, StateName.RUNNING, *FINAL}, timeout=5.0)
        assert wait_state(api, run.id, FINAL) == StateName.SUCCESS
