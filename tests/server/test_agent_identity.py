"""One record per agent name and host across restarts; a clean stop is `stopped`, not `lost`; `?all` for history."""

from __future__ import annotations

import time

from tests.conftest import MakeApiServer
from tests.server.backends import make_server, pg_database, pg_url
from tests.server.helpers import Http

__all__ = ["make_server", "pg_database", "pg_url"]  # fixtures used by name


def _by_id(http: Http, **params: str) -> dict[str, dict[str, object]]:
    return {agent["id"]: agent for agent in http.ok("get", "/api/agents", params=params)}


def test_a_stopped_agent_is_listed_stopped_and_its_restart_reuses_the_record(make_server: MakeApiServer) -> None:
    http = Http(make_server())
    first = http.agent("etl-1", hostname="box", labels=["etl"], max_concurrent_runs=2)
    stopped = http.ok("post", f"/api/agents/{first['id']}/disconnect")
    assert stopped["stopped"] is not None
    assert stopped["lost"] is False
    again = http.agent("etl-1", hostname="box", labels=["etl", "gpu"], config_generation=3)
    assert again["id"] == first["id"]
    assert again["labels"] == ["etl", "gpu"]
    assert again["config_generation"] == 3
    assert "stopped" not in again  # running again
    assert list(_by_id(http)) == [first["id"]]
    assert list(_by_id(http, all="true")) == [first["id"]]


def test_the_same_name_on_another_host_or_while_the_first_runs_is_another_agent(make_server: MakeApiServer) -> None:
    http = Http(make_server())
    first = http.agent("worker", hostname="box-1")
    other_host = http.agent("worker", hostname="box-2")
    twin = http.agent("worker", hostname="box-1")  # the first one is still online: not taken over
    assert len({first["id"], other_host["id"], twin["id"]}) == 3
    assert set(_by_id(http)) == {first["id"], other_host["id"], twin["id"]}


def test_a_lost_agent_with_runs_is_not_taken_over_until_they_end(make_server: MakeApiServer) -> None:
    server = make_server(agent_timeout=0.5, sweep_interval=60.0)
    http = Http(server)
    http.flow()
    http.run()
    crashed = http.agent("box-agent", hostname="box", run_unlabeled=True)
    assert http.claim(crashed["id"], run_unlabeled=True)["runs"]
    time.sleep(0.8)  # lost, and the sweep has not crashed its run yet
    restarted = http.agent("box-agent", hostname="box", run_unlabeled=True)
    assert restarted["id"] != crashed["id"], "a run is still active under the lost record"
    listed = _by_id(http)
    assert list(listed) == [restarted["id"]]  # the latest record of the name and host
    history = _by_id(http, all="true")
    assert set(history) == {crashed["id"], restarted["id"]}
    assert history[crashed["id"]]["lost"] is True
    # once the lost record holds no active run, the next start takes it over (the newest idle record)
    http.ok("post", f"/api/agents/{restarted['id']}/disconnect")
    again = http.agent("box-agent", hostname="box")
    assert again["id"] == restarted["id"]


def test_two_restarts_at_once_take_over_one_record_only(make_server: MakeApiServer) -> None:
    http = Http(make_server())
    first = http.agent("dup", hostname="box")
    http.ok("post", f"/api/agents/{first['id']}/disconnect")
    a = http.agent("dup", hostname="box")
    b = http.agent("dup", hostname="box")
    assert a["id"] == first["id"]
    assert b["id"] != first["id"]


def test_a_stopped_agent_gets_no_runs_from_a_claim_still_in_flight(make_server: MakeApiServer) -> None:
    http = Http(make_server())
    http.flow()
    run = http.run()
    agent = http.agent("leaving", run_unlabeled=True)
    http.ok("post", f"/api/agents/{agent['id']}/disconnect")
    assert http.claim(agent["id"], run_unlabeled=True)["runs"] == []
    assert http.ok("get", f"/api/flow_runs/{run['id']}")["state"] == "Scheduled"
    assert http.post("/api/agents/nope/disconnect").status_code == 404


def test_a_run_left_active_by_a_stopped_agent_crashes_with_a_message_that_says_so(
    make_server: MakeApiServer,
) -> None:
    server = make_server(agent_timeout=0.5, sweep_interval=0.1)
    http = Http(server)
    http.flow()
    run = http.run()
    agent = http.agent("quitter", run_unlabeled=True)
    http.claim(agent["id"], run_unlabeled=True)
    http.state(run["id"], "Running")
    http.ok("post", f"/api/agents/{agent['id']}/disconnect")
    deadline = time.monotonic() + 15
    while http.ok("get", f"/api/flow_runs/{run['id']}")["state"] != "Crashed":
        assert time.monotonic() < deadline, "the run was never crashed"
        time.sleep(0.05)
    crashed = http.ok("get", f"/api/flow_runs/{run['id']}")
    assert crashed["state_message"] == "agent quitter stopped without reporting the end of this run"
    assert http.ok("get", "/api/agents")[0]["lost"] is False  # stopped, not lost
