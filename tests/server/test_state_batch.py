"""``POST /api/flow_runs/states``: many runs' reports in one request, each applied as the single endpoint would."""

from __future__ import annotations

from typing import Any

import requests

from localagent.server.runner import ServerThread
from tests.conftest import MakeApiServer
from tests.server.helpers import Http


def _report(http: Http, *reports: dict[str, Any]) -> requests.Response:
    return http.post("/api/flow_runs/states", json={"reports": list(reports)})


def test_reports_of_many_runs_apply_in_order(api_server: ServerThread) -> None:
    http = Http(api_server)
    first, second = (claimed["run"]["id"] for claimed in http.claimed_runs(2))
    reply = _report(
        http,
        {"run_id": first, "state": "Running", "pid": 11},
        {"run_id": second, "state": "Running", "pid": 12},
        {"run_id": first, "state": "Success", "exit_code": 0, "message": "process exited with code 0"},
        {"run_id": second, "state": "Failed", "exit_code": 3},
    )
    assert reply.status_code == 200, reply.text
    assert [(r["run_id"], r["status"], r["state"]) for r in reply.json()["results"]] == [
        (first, 200, "Running"),
        (second, 200, "Running"),
        (first, 200, "Success"),
        (second, 200, "Failed"),
    ]
    assert http.states(first) == ["Scheduled", "Submitted", "Running", "Success"]
    run = http.ok("get", f"/api/flow_runs/{second}")
    assert (run["state"], run["pid"], run["exit_code"]) == ("Failed", 12, 3)
    assert run["started"] is not None and run["ended"] is not None


def test_a_refused_report_does_not_stop_the_others(api_server: ServerThread) -> None:
    http = Http(api_server)
    (claimed,) = http.claimed_runs(1)
    run_id = claimed["run"]["id"]
    reply = _report(
        http,
        {"run_id": "no-such-run", "state": "Running"},
        {"run_id": run_id, "state": "Success"},  # Submitted -> Success is not allowed
        {"run_id": run_id, "state": "Running", "pid": 5},
        {"run_id": run_id, "state": "Running", "pid": 5},  # a repeat: a no-op, not an error
    )
    assert reply.status_code == 200, reply.text
    results = reply.json()["results"]
    assert [(r["status"], r["state"]) for r in results] == [
        (404, None),
        (409, "Submitted"),
        (200, "Running"),
        (200, "Running"),
    ]
    assert results[0]["detail"] == "flow run 'no-such-run' not found"
    assert "cannot become Success" in results[1]["detail"]
    assert http.states(run_id) == ["Scheduled", "Submitted", "Running"]


def test_a_resent_final_report_after_a_retry_is_a_no_op(api_server: ServerThread) -> None:
    http = Http(api_server)
    (claimed,) = http.claimed_runs(1, retries=1)
    run_id = claimed["run"]["id"]
    failed = {"run_id": run_id, "state": "Failed", "exit_code": 1}
    first = _report(http, {"run_id": run_id, "state": "Running"}, failed).json()["results"]
    assert [r["state"] for r in first] == ["Running", "Scheduled"]  # the retry put it back at once
    again = _report(http, {"run_id": run_id, "state": "Running"}, failed)
    # The resent Running is refused (the new attempt is Scheduled); the resent Failed is recognised.
    assert [(r["status"], r["state"]) for r in again.json()["results"]] == [(409, "Scheduled"), (200, "Scheduled")]
    assert http.ok("get", f"/api/flow_runs/{run_id}")["attempt"] == 2


def test_bad_batches_get_a_422_naming_the_field(api_server: ServerThread) -> None:
    http = Http(api_server)
    (claimed,) = http.claimed_runs(1)
    run_id = claimed["run"]["id"]
    empty = http.post("/api/flow_runs/states", json={"reports": []})
    assert empty.status_code == 422 and "body.reports" in empty.json()["detail"]
    huge = _report(http, {"run_id": run_id, "state": "Running", "pid": 2**70})
    assert huge.status_code == 422 and "body.reports.0.pid" in huge.json()["detail"]
    unknown_state = _report(http, {"run_id": run_id, "state": "Sleeping"})
    assert unknown_state.status_code == 422
    assert http.states(run_id) == ["Scheduled", "Submitted"]  # nothing of a refused batch was applied


def test_batches_need_an_api_key_not_a_run_token(make_api_server: MakeApiServer) -> None:
    server = make_api_server(api_keys=("k",))
    http = Http(server, key="k")
    (claimed,) = http.claimed_runs(1)
    run_id = claimed["run"]["id"]
    body = {"reports": [{"run_id": run_id, "state": "Running"}]}
    as_run = requests.post(
        server.url + "/api/flow_runs/states",
        json=body,
        headers={"Authorization": f"Bearer {claimed['token']}"},
        timeout=30,
    )
    assert as_run.status_code == 403
    assert requests.post(server.url + "/api/flow_runs/states", json=body, timeout=30).status_code == 401
    assert http.post("/api/flow_runs/states", json=body).status_code == 200
