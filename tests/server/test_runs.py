"""Flow runs: creation, listing, transitions with history, retries and cancel."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from localagent.server.runner import ServerThread
from tests.server.helpers import Http


def test_create_merges_parameters_and_labels(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow("etl", parameters={"day": "today", "n": 1}, labels=["a"], run_config={"type": "local", "labels": ["b"]})
    run = http.run("etl", parameters={"n": 2}, labels=["c", "a"])
    assert run["parameters"] == {"day": "today", "n": 2}
    assert run["labels"] == ["a", "b", "c"]
    assert run["run_config_type"] == "local"
    assert run["state"] == "Scheduled"
    assert run["flow_version"] == 1
    assert len(run["name"].split("-")) == 3
    assert [h["state"] for h in run["history"]] == ["Scheduled"]


def test_unknown_flow_is_404(api_server: ServerThread) -> None:
    reply = Http(api_server).post("/api/flow_runs", json={"flow": "x"})
    assert reply.status_code == 404
    assert reply.json() == {"detail": "flow 'x' not found"}


def test_list_filters_and_paging(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow("a")
    http.flow("b")
    ids = [http.run("a")["id"] for _ in range(5)]
    http.run("b")
    assert [r["id"] for r in http.ok("get", "/api/flow_runs", params={"flow": "a"})] == ids[::-1]
    page = http.ok("get", "/api/flow_runs", params={"flow": "a", "limit": 2, "offset": 2})
    assert [r["id"] for r in page] == ids[::-1][2:4]
    http.post(f"/api/flow_runs/{ids[0]}/cancel")
    cancelled = http.ok("get", "/api/flow_runs", params={"state": "Cancelled"})
    assert [r["id"] for r in cancelled] == [ids[0]]
    assert http.get("/api/flow_runs", params={"limit": 1001}).status_code == 422


def test_full_lifecycle_records_history(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow()
    run = http.run()
    agent = http.agent()
    claimed = http.claim(agent["id"])["runs"][0]
    assert claimed["run"]["state"] == "Submitted"
    assert claimed["run"]["agent_name"] == "agent-1"
    running = http.state(run["id"], "Running", pid=4242, message="started").json()
    assert running["pid"] == 4242
    assert running["started"] is not None
    assert http.state(run["id"], "Running").status_code == 200  # a retried report is a no-op
    done = http.state(run["id"], "Success", exit_code=0, message="process exited with code 0").json()
    assert done["exit_code"] == 0
    assert done["ended"] is not None
    assert [(h["state"], h["message"]) for h in done["history"]] == [
        ("Scheduled", "created"),
        ("Submitted", "claimed by agent agent-1"),
        ("Running", "started"),
        ("Success", "process exited with code 0"),
    ]


def test_illegal_transitions_are_409(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow()
    run = http.run()
    reply = http.state(run["id"], "Running")
    assert reply.status_code == 409
    assert "Scheduled; it cannot become Running" in reply.json()["detail"]
    assert http.state(run["id"], "Submitted").status_code == 409
    http.claim(http.agent()["id"])
    http.state(run["id"], "Running")
    http.state(run["id"], "Failed", exit_code=3)
    late = http.state(run["id"], "Success")
    assert late.status_code == 409
    assert late.json()["detail"] == f"flow run {run['id']} is already Failed; it cannot become Success"
    assert http.states(run["id"]) == ["Scheduled", "Submitted", "Running", "Failed"]


def test_failed_run_with_retries_is_rescheduled_under_the_same_id(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow(retries=2, retry_delay=0)
    run = http.run()
    agent = http.agent()["id"]
    for attempt in (1, 2):
        claimed = http.claim(agent)["runs"]
        assert [c["run"]["id"] for c in claimed] == [run["id"]]
        assert claimed[0]["run"]["attempt"] == attempt
        http.state(run["id"], "Running")
        after = http.state(run["id"], "Failed", exit_code=1, message="process exited with code 1").json()
        assert after["state"] == "Scheduled"
        assert after["attempt"] == attempt + 1
        assert after["state_message"] == f"retry {attempt} of 2 in 0s"
        # the agent's client resends its report: still a no-op, not a 409
        assert http.state(run["id"], "Failed", exit_code=1).status_code == 200
    http.claim(agent)
    http.state(run["id"], "Running")
    final = http.state(run["id"], "Failed", exit_code=1).json()
    assert final["state"] == "Failed"
    assert final["attempt"] == 3
    assert http.states(run["id"]).count("Failed") == 3


def test_retry_waits_for_retry_delay(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow(retries=1, retry_delay="1h")
    run = http.run()
    agent = http.agent()["id"]
    http.claim(agent)
    http.state(run["id"], "Crashed", message="lost")
    again = http.ok("get", f"/api/flow_runs/{run['id']}")
    assert again["state"] == "Scheduled"
    assert again["state_message"] == "retry 1 of 1 in 1h"
    start = datetime.fromisoformat(again["scheduled_start"].replace("Z", "+00:00"))
    assert start > datetime.now(timezone.utc) + timedelta(minutes=59)
    assert http.claim(agent)["runs"] == []


def test_cancel_scheduled_is_immediate_and_final_is_409(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow()
    run = http.run()
    cancelled = http.ok("post", f"/api/flow_runs/{run['id']}/cancel")
    assert cancelled["state"] == "Cancelled"
    again = http.post(f"/api/flow_runs/{run['id']}/cancel")
    assert again.status_code == 409
    assert "already Cancelled" in again.json()["detail"]
    assert http.post("/api/flow_runs/nope/cancel").status_code == 404


def test_cancel_running_goes_through_cancelling(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow(retries=3)
    run = http.run()
    agent = http.agent()["id"]
    http.claim(agent)
    http.state(run["id"], "Running")
    assert http.ok("post", f"/api/flow_runs/{run['id']}/cancel")["state"] == "Cancelling"
    assert http.ok("post", f"/api/flow_runs/{run['id']}/cancel")["state"] == "Cancelling"
    assert http.ok("post", f"/api/agents/{agent}/heartbeat", json={"running_runs": [run["id"]]})["cancel"] == [
        run["id"]
    ]
    done = http.state(run["id"], "Cancelled", message="cancelled by user").json()
    assert done["state"] == "Cancelled"
    assert http.ok("post", f"/api/agents/{agent}/heartbeat", json={"running_runs": []})["cancel"] == []
