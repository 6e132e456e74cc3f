"""Runs of a silent agent over HTTP (a real server, its real sweep): Unknown, reconnection, late reports,
replacement only by policy, reconciliation with a replacement, the lost timeout.

The "agent" here is the test speaking the agent's requests; ``tests/e2e/test_partition.py`` cuts real agents off.
A run that must *not* move is checked after a *sentinel*: a second agent that goes silent later and whose run
becomes Unknown proves that the sweep has run again since (no sleep stands in for an assertion).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.conftest import MakeApiServer
from tests.server.helpers import Http
from tests.support.wait import wait_for

STOP = {"on_api_lost": "stop", "api_lost_after": 0.5, "stop_grace": 0.2, "beat_interval": 0.2}


def _run(http: Http, run_id: str) -> dict[str, Any]:
    return http.ok("get", f"/api/flow_runs/{run_id}")  # type: ignore[no-any-return]


def _wait_state(http: Http, run_id: str, state: str, timeout: float = 30.0) -> dict[str, Any]:
    return wait_for(  # type: ignore[no-any-return]
        lambda: (run := _run(http, run_id))["state"] == state and run,
        timeout=timeout,
        what=f"run {run_id} to become {state}",
    )


def _sentinel(http: Http, name: str) -> None:
    """Returns once the sweep has run again after this call (see the module docstring)."""
    http.flow(f"{name}-flow", labels=[name])
    run = http.run(f"{name}-flow")
    agent = http.agent(name, labels=[name])
    assert http.claim(agent["id"], labels=[name])["runs"]
    _wait_state(http, run["id"], "Unknown")


def _history(run: dict[str, Any]) -> list[tuple[str, str]]:
    return [(h["state"], h["message"]) for h in run["history"]]


def test_silent_agent_runs_become_unknown_not_crashed_nor_retried_then_reconnect(
    make_api_server: MakeApiServer,
) -> None:
    http = Http(make_api_server(agent_timeout=0.5, sweep_interval=0.1))
    http.flow("work", retries=3)
    run = http.run("work")
    agent = http.agent("a1", hostname="host-1")
    assert http.claim(agent["id"], run_unlabeled=True)["runs"]
    assert http.state(run["id"], "Running", pid=42, attempt=1).status_code == 200

    unknown = _wait_state(http, run["id"], "Unknown")
    assert unknown["state_message"] == "agent host-1/a1 silent for 0.5s; the run may still be running"
    assert unknown["attempt"] == 1 and unknown["agent_name"] == "a1"
    _sentinel(http, "later")
    still = _run(http, run["id"])
    assert (still["state"], still["attempt"]) == ("Unknown", 1)  # retries = 3, yet no retry
    assert [r["id"] for r in http.ok("get", "/api/flow_runs", params={"state": "Unknown"})] != []
    assert next(a for a in http.ok("get", "/api/agents") if a["name"] == "a1")["lost"] is True

    # It comes back and still runs it: Running again, then its Success is taken.
    reply = http.ok("post", f"/api/agents/{agent['id']}/heartbeat", json={"running_runs": [run["id"]]})
    assert reply["cancel"] == []
    back = _run(http, run["id"])
    assert back["state"] == "Running"
    assert _history(back)[-2:] == [
        ("Unknown", "agent host-1/a1 silent for 0.5s; the run may still be running"),
        ("Running", "agent host-1/a1 reconnected"),
    ]
    assert http.state(run["id"], "Success", exit_code=0, attempt=1).status_code == 200
    done = _run(http, run["id"])
    assert (done["state"], done["attempt"], done["exit_code"]) == ("Success", 1, 0)


def test_a_late_report_is_taken_straight_from_unknown(make_api_server: MakeApiServer) -> None:
    http = Http(make_api_server(agent_timeout=0.5, sweep_interval=0.1))
    (run,) = http.claimed_runs(1)
    http.state(run["run"]["id"], "Running", attempt=1)
    _wait_state(http, run["run"]["id"], "Unknown")
    # The agent's spooled final report, with the agent key, in a batch: 200, applied.
    reply = http.ok(
        "post",
        "/api/flow_runs/states",
        json={"reports": [{"run_id": run["run"]["id"], "state": "Success", "exit_code": 0, "attempt": 1}]},
    )
    assert reply["results"][0]["status"] == 200 and reply["results"][0]["state"] == "Success"
    assert [s for s, _ in _history(_run(http, run["run"]["id"]))][-2:] == ["Unknown", "Success"]


def test_cancelling_and_cancelled_while_unknown_go_back_to_cancelling(make_api_server: MakeApiServer) -> None:
    http = Http(make_api_server(agent_timeout=0.5, sweep_interval=0.1))
    first, second = http.claimed_runs(2)
    agent_id = first["run"]["agent_id"]
    for claimed in (first, second):
        http.state(claimed["run"]["id"], "Running")
    http.ok("post", f"/api/flow_runs/{first['run']['id']}/cancel")  # Cancelling before the silence
    _wait_state(http, first["run"]["id"], "Unknown")
    _wait_state(http, second["run"]["id"], "Unknown")
    cancelled = http.ok("post", f"/api/flow_runs/{second['run']['id']}/cancel")  # cancel while Unknown
    assert cancelled["state"] == "Unknown"
    assert cancelled["history"][-1]["state"] == "Cancelling"
    ids = [first["run"]["id"], second["run"]["id"]]
    reply = http.ok("post", f"/api/agents/{agent_id}/heartbeat", json={"running_runs": ids})
    assert sorted(reply["cancel"]) == sorted(ids)
    for run_id in ids:
        assert _run(http, run_id)["state"] == "Cancelling"
        assert http.state(run_id, "Cancelled", attempt=1).status_code == 200


def _stop_agent_with_replaced_run(http: Http) -> tuple[dict[str, Any], dict[str, Any]]:
    """A retry_lost flow run by a ``stop`` agent that went silent and was replaced: (agent, run)."""
    http.flow("work", retries=1, retry_lost=True)
    run = http.run("work")
    agent = http.agent("a1", hostname="host-1", lost_policy=STOP)
    (claimed,) = http.claim(agent["id"], run_unlabeled=True)["runs"]
    http.state(run["id"], "Running", attempt=1)
    _wait_state(http, run["id"], "Scheduled")
    return agent, claimed


def test_retry_lost_with_a_stop_agent_waits_out_its_stop_time(make_api_server: MakeApiServer) -> None:
    server = make_api_server(agent_timeout=0.5, sweep_interval=0.1)
    http = Http(server)
    agent, claimed = _stop_agent_with_replaced_run(http)
    run = _run(http, claimed["run"]["id"])
    assert run["attempt"] == 2
    states = [s for s, _ in _history(run)]
    assert states == ["Scheduled", "Submitted", "Running", "Unknown", "Crashed", "Scheduled"]
    crashed = run["history"][4]
    assert crashed["message"] == "agent lost; stopped by its on_api_lost policy"
    # Not before the agent's own stop time: last heartbeat + api_lost_after + beat + stop_grace + sweep + margin.
    listed = next(a for a in http.ok("get", "/api/agents") if a["id"] == agent["id"])
    assert listed["lost_policy"]["on_api_lost"] == "stop"
    last_beat = datetime.fromisoformat(listed["last_heartbeat"])
    window = 0.5 + 0.2 + 0.2 + 0.1 + 2.0
    assert (datetime.fromisoformat(crashed["time"]) - last_beat).total_seconds() >= window


def test_a_keep_agent_is_never_replaced_even_with_retry_lost(make_api_server: MakeApiServer) -> None:
    http = Http(make_api_server(agent_timeout=0.5, sweep_interval=0.1))
    http.flow("work", retries=2, retry_lost=True)
    run = http.run("work")
    agent = http.agent("a1", lost_policy={**STOP, "on_api_lost": "keep"})
    http.claim(agent["id"], run_unlabeled=True)
    _wait_state(http, run["id"], "Unknown")
    _sentinel(http, "s1")
    _sentinel(http, "s2")  # well past the window a stop agent would have had (2.9 s)
    assert _run(http, run["id"])["state"] == "Unknown"


def test_late_success_while_the_replacement_waits_takes_the_run(make_api_server: MakeApiServer) -> None:
    """Reconciliation (a): the replacement was not claimed yet; the original's Success wins."""
    http = Http(make_api_server(agent_timeout=0.5, sweep_interval=0.1, api_keys=("k",)), key="k")
    http.flow("work", retries=1, retry_lost=True, retry_delay="1h")  # the replacement waits
    run = http.run("work")
    agent = http.agent("a1", lost_policy=STOP)
    (claimed,) = http.claim(agent["id"], run_unlabeled=True)["runs"]
    _wait_state(http, run["id"], "Scheduled")
    # Its late report comes with its run token (the replaced attempt's token is still heard).
    token = {"Authorization": f"Bearer {claimed['token']}"}
    late = http.post(f"/api/flow_runs/{run['id']}/state", json={"state": "Success", "attempt": 1}, headers=token)
    assert late.status_code == 200
    done = _run(http, run["id"])
    assert (done["state"], done["attempt"]) == ("Success", 1)
    assert done["history"][-1]["message"] == (
        "attempt 1 reported Success late (no message); its replacement, attempt 2, had not started and is dropped"
    )
    # Nothing is handed out any more.
    other = http.agent("a2")
    assert http.claim(other["id"], run_unlabeled=True)["runs"] == []


def test_late_report_after_the_replacement_started_is_recorded_only(make_api_server: MakeApiServer) -> None:
    """Reconciliation (b): the replacement runs; the original's report goes to the history, and the original
    agent is told to stop the run should it still run it."""
    http = Http(make_api_server(agent_timeout=0.5, sweep_interval=0.1))
    agent, claimed = _stop_agent_with_replaced_run(http)
    run_id = claimed["run"]["id"]
    other = http.agent("a2")
    (replacement,) = http.claim(other["id"], run_unlabeled=True)["runs"]
    assert replacement["run"]["attempt"] == 2
    assert replacement["next_log_seq"] > 10**8  # past the marker line: late lines of attempt 1 fit below it
    http.state(run_id, "Running", attempt=2)
    report = {"run_id": run_id, "state": "Success", "message": "process exited with code 0", "attempt": 1}
    for _ in range(2):  # a resend is recorded once
        result = http.ok("post", "/api/flow_runs/states", json={"reports": [report]})["results"][0]
        assert (result["status"], result["state"]) == (200, "Running")
    now = _run(http, run_id)
    assert (now["state"], now["attempt"]) == ("Running", 2)
    late = [h for h in now["history"] if h["message"].startswith("late report")]
    assert [(h["state"], h["message"]) for h in late] == [
        ("Success", "late report of attempt 1 (replaced by attempt 2, now Running): process exited with code 0")
    ]
    reply = http.ok("post", f"/api/agents/{agent['id']}/heartbeat", json={"running_runs": [run_id]})
    assert reply["cancel"] == [run_id]
    assert http.state(run_id, "Success", attempt=2).status_code == 200
    assert _run(http, run_id)["state"] == "Success"


def test_lost_timeout_gives_up_without_retry_unless_retry_lost(make_api_server: MakeApiServer) -> None:
    http = Http(make_api_server(agent_timeout=0.5, sweep_interval=0.1, lost_timeout=1.0))
    http.flow("plain", retries=3)
    http.flow("lost-ok", retries=1, retry_lost=True)
    plain, lost_ok = http.run("plain"), http.run("lost-ok")
    agent = http.agent("a1")  # tells no policy: counts as keep
    assert len(http.claim(agent["id"], slots=2, run_unlabeled=True)["runs"]) == 2
    gone = _wait_state(http, plain["id"], "Crashed")
    assert gone["state_message"] == "agent never came back within 1s (lost timeout)"
    assert gone["attempt"] == 1  # not retried: the flow does not allow runs of a lost agent to run again
    retried = _wait_state(http, lost_ok["id"], "Scheduled")
    assert retried["attempt"] == 2
    # The agent's late report of the given-up run is recorded, not refused.
    late = http.state(plain["id"], "Success", attempt=1)
    assert late.status_code == 200
    after = _run(http, plain["id"])
    assert after["state"] == "Crashed"
    assert after["history"][-1]["message"] == "late report of this attempt after it was given up: Success"


def test_a_replaced_attempts_token_never_moves_the_replacement(make_api_server: MakeApiServer) -> None:
    """The next agent on a dead agent's state_dir reports what it left ``Crashed`` with the run's token and no
    attempt: with a replaced attempt's token that is a late report, not the end of the replacement."""
    http = Http(make_api_server(agent_timeout=0.5, sweep_interval=0.1, api_keys=("k",)), key="k")
    _agent, claimed = _stop_agent_with_replaced_run(http)
    run_id = claimed["run"]["id"]
    other = http.agent("a2")
    http.claim(other["id"], run_unlabeled=True)
    http.state(run_id, "Running", attempt=2)
    old_token = {"Authorization": f"Bearer {claimed['token']}"}
    assert http.get(f"/api/flow_runs/{run_id}", headers=old_token).status_code == 200
    late = http.post(f"/api/flow_runs/{run_id}/state", json={"state": "Crashed", "message": "gone"}, headers=old_token)
    assert late.status_code == 200 and late.json()["state"] == "Running"
    assert _run(http, run_id)["history"][-1]["message"] == (
        "late report of attempt 1 (replaced by attempt 2, now Running): gone"
    )
    # Its late output is taken too, and lands above the marker line, before the replacement's.
    line = {"seq": 5, "time": "2026-01-01T00:00:00Z", "stream": "stdout", "text": "late line of attempt 1"}
    assert http.post(f"/api/flow_runs/{run_id}/logs", json={"lines": [line]}, headers=old_token).status_code == 200
    texts = [entry["text"] for entry in http.ok("get", f"/api/flow_runs/{run_id}/logs")["lines"]]
    assert texts[0] == "late line of attempt 1" and texts[1].startswith("--- attempt 1 was replaced")


def test_a_claim_lost_in_the_partition_crashes_once_the_agent_is_heard_again(make_api_server: MakeApiServer) -> None:
    http = Http(make_api_server(agent_timeout=0.5, sweep_interval=0.1, submitted_grace=0.2))
    http.flow("work", retries=1)
    run = http.run("work")
    agent = http.agent("a1")
    http.claim(agent["id"], run_unlabeled=True)  # the reply never reached the agent
    _wait_state(http, run["id"], "Unknown")
    http.ok("post", f"/api/agents/{agent['id']}/heartbeat", json={"running_runs": []})
    retried = _run(http, run["id"])
    assert (retried["state"], retried["attempt"]) == ("Scheduled", 2)
    assert [s for s, _ in _history(retried)] == ["Scheduled", "Submitted", "Unknown", "Crashed", "Scheduled"]
