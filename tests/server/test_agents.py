"""Agents: register, heartbeat, list; the lost-agent sweep and the never-started claim."""

from __future__ import annotations

import time

from localagent.server.runner import ServerThread
from tests.conftest import MakeApiServer
from tests.server.helpers import Http
from tests.support.wait import wait_for


def test_register_heartbeat_and_list(api_server: ServerThread) -> None:
    http = Http(api_server)
    first = http.agent("host-1", labels=["etl"], hostname="h1", version="0.1", config_generation=1)
    second = http.agent("host-1")
    assert first["id"] != second["id"]
    beat = {
        "running_runs": ["r1"],
        "labels": ["etl", "gpu"],
        "config_generation": 2,
        "config_hash": "abc",
        "config_error": "bad key",
    }
    http.ok("post", f"/api/agents/{first['id']}/heartbeat", json=beat)
    listed = {a["id"]: a for a in http.ok("get", "/api/agents")}
    assert listed[first["id"]]["labels"] == ["etl", "gpu"]
    assert listed[first["id"]]["config_generation"] == 2
    assert listed[first["id"]]["config_error"] == "bad key"
    assert listed[first["id"]]["running_runs"] == ["r1"]
    assert listed[first["id"]]["lost"] is False
    assert http.post("/api/agents/nope/heartbeat", json={}).status_code == 404


def test_runs_left_by_an_agent_that_stopped_cleanly_crash_and_retry(make_api_server: MakeApiServer) -> None:
    """An agent that said it stopped runs nothing any more: its runs left active crash (a silent agent's
    become Unknown instead: tests/server/test_lost_runs.py)."""
    server = make_api_server(agent_timeout=0.5, sweep_interval=0.1)
    http = Http(server)
    http.flow("once")
    http.flow("twice", retries=1)
    once = http.run("once")
    twice = http.run("twice")
    agent = http.agent("ghost")
    claimed = http.claim(agent["id"], slots=2)["runs"]
    assert len(claimed) == 2
    http.state(once["id"], "Running")
    http.ok("post", f"/api/agents/{agent['id']}/disconnect")
    wait_for(
        lambda: http.ok("get", f"/api/flow_runs/{once['id']}")["state"] == "Crashed",
        timeout=15.0,
        what="the run of the stopped agent to crash",
    )
    crashed = http.ok("get", f"/api/flow_runs/{once['id']}")
    assert crashed["state_message"] == "agent ghost stopped without reporting the end of this run"
    retried = http.ok("get", f"/api/flow_runs/{twice['id']}")
    assert retried["state"] == "Scheduled"
    assert retried["attempt"] == 2
    assert [h["state"] for h in retried["history"]] == ["Scheduled", "Submitted", "Crashed", "Scheduled"]
    # it comes back: heartbeat tells it to drop the run it no longer owns
    reply = http.ok("post", f"/api/agents/{agent['id']}/heartbeat", json={"running_runs": [once["id"]]})
    assert reply["cancel"] == [once["id"]]


def test_submitted_run_the_agent_never_started_crashes(make_api_server: MakeApiServer) -> None:
    server = make_api_server(submitted_grace=0.2)
    http = Http(server)
    http.flow()
    run = http.run()
    agent = http.agent()["id"]
    http.claim(agent)
    time.sleep(0.3)  # past the grace
    http.ok("post", f"/api/agents/{agent}/heartbeat", json={"running_runs": [run["id"]]})
    assert http.ok("get", f"/api/flow_runs/{run['id']}")["state"] == "Submitted"  # it knows the run
    http.ok("post", f"/api/agents/{agent}/heartbeat", json={"running_runs": []})
    crashed = http.ok("get", f"/api/flow_runs/{run['id']}")
    assert crashed["state"] == "Crashed"
    assert crashed["state_message"] == "agent did not start the run"
