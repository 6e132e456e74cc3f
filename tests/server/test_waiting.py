"""Why a Scheduled run waits: one test per reason, against a real server with agents registered through the API."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

import requests
from hypothesis import given
from hypothesis import strategies as st

from localagent.server.claims import label_rule_accepts
from localagent.server.waiting import _Online
from tests.conftest import MakeApiServer
from tests.server.backends import make_server, pg_database, pg_url
from tests.server.helpers import Http

__all__ = ["make_server", "pg_database", "pg_url"]  # fixtures used by name


def waiting(http: Http, run: dict[str, Any]) -> dict[str, str]:
    body = http.ok("get", f"/api/flow_runs/{run['id']}")
    assert body["state"] == "Scheduled"
    return body["waiting"]  # type: ignore[no-any-return]


def test_no_agent_ever(make_server: MakeApiServer) -> None:
    http = Http(make_server())
    http.flow()
    assert waiting(http, http.run()) == {
        "reason": "no_agent",
        "message": "no agent is online: none has ever registered with this API (start one: `localagent run`)",
    }


def test_no_agent_online_names_the_last_one_and_how_it_went(make_server: MakeApiServer) -> None:
    server = make_server(agent_timeout=1.0)
    http = Http(server)
    http.flow()
    run = http.run()
    http.agent("old-host", hostname="box-1")
    time.sleep(1.3)  # silent for longer than agent_timeout: lost
    lost = waiting(http, run)
    assert lost["reason"] == "no_agent"
    assert lost["message"].startswith("no agent is online: the last one, old-host on box-1, was last heard from at ")
    leaver = http.agent("leaver")
    assert waiting(http, run)["reason"] == "claimable"
    http.ok("post", f"/api/agents/{leaver['id']}/disconnect")
    stopped = waiting(http, run)
    assert stopped["reason"] == "no_agent"
    assert stopped["message"].startswith("no agent is online: the last one, leaver, stopped at ")


def test_a_run_config_type_no_agent_takes(make_server: MakeApiServer) -> None:
    http = Http(make_server())
    http.flow("boxed", run_config={"type": "docker"})
    http.agent(run_unlabeled=True)
    assert waiting(http, http.run("boxed")) == {
        "reason": "unsupported_run_config",
        "message": "no online agent takes run config type 'docker' (the online agents take local, universal)",
    }


def test_an_unlabeled_run_and_only_labelled_agents(make_server: MakeApiServer) -> None:
    http = Http(make_server())
    http.flow()
    http.agent("h1", labels=["h1"])
    reason = waiting(http, http.run())
    assert reason["reason"] == "unlabeled_run"
    assert reason["message"] == (
        "the run has no labels and no online agent takes unlabeled runs (agents with labels take only runs "
        "labelled for them: h1 [h1]); give the run a label such an agent has (--label), or start an agent "
        "with agent.run_unlabeled = true (`localagent run --set agent.run_unlabeled=true`)"
    )


def test_labels_no_agent_has_name_the_closest_agent(make_server: MakeApiServer) -> None:
    http = Http(make_server())
    http.flow("train", labels=["etl", "gpu"])
    http.agent("db-box", labels=["db"])
    http.agent("etl-box", labels=["etl", "fast"])
    assert waiting(http, http.run("train")) == {
        "reason": "no_matching_agent",
        "message": "no online agent has every label of this run [etl, gpu]; "
        "the closest, etl-box, has [etl, fast] (missing gpu)",
    }


def test_every_matching_agent_at_its_cap(make_server: MakeApiServer) -> None:
    http = Http(make_server())
    http.flow()
    first, second = http.run(), http.run()
    agent = http.agent("small", run_unlabeled=True, max_concurrent_runs=1)
    assert agent["max_concurrent_runs"] == 1
    claimable = waiting(http, first)
    assert claimable["reason"] == "claimable"
    assert claimable["message"] == (
        "agent small takes this run and has a free slot (0 of 1 slots in use); it should claim it with its next poll"
    )
    assert http.claim(agent["id"], run_unlabeled=True)["runs"][0]["run"]["id"] == first["id"]
    assert waiting(http, second) == {
        "reason": "agents_busy",
        "message": "every agent that takes this run is at its max_concurrent_runs: small runs 1 of 1",
    }
    # a heartbeat that raises the cap frees a slot
    http.ok(
        "post",
        f"/api/agents/{agent['id']}/heartbeat",
        json={"running_runs": [first["id"]], "run_unlabeled": True, "max_concurrent_runs": 2},
    )
    assert waiting(http, second)["reason"] == "claimable"


def test_an_agent_that_does_not_report_a_cap_is_taken_as_free(make_server: MakeApiServer) -> None:
    http = Http(make_server())
    http.flow()
    run = http.run()
    agent = http.agent("old-version", run_unlabeled=True)
    assert "max_concurrent_runs" not in agent  # not told: left out of the reply, as an older agent expects
    assert "stopped" not in agent
    http.claim(agent["id"], run_unlabeled=True)
    later = http.run()
    assert waiting(http, later)["message"] == (
        "agent old-version takes this run and has a free slot (1 running; it did not report a cap); "
        "it should claim it with its next poll"
    )
    assert run["id"] != later["id"]


def test_not_due_yet_and_a_retry_delay(make_server: MakeApiServer) -> None:
    server = make_server()
    http = Http(server)
    http.flow()
    start = datetime.now(timezone.utc) + timedelta(hours=2)
    later = http.run(scheduled_start=start.isoformat())
    shown = waiting(http, later)
    assert shown == {"reason": "not_due", "message": f"not due yet: scheduled for {start:%Y-%m-%d %H:%M:%S} UTC"}
    http.flow("flaky", retries=1, retry_delay="1h")
    run = http.run("flaky")
    agent = http.agent(run_unlabeled=True)
    claimed = http.claim(agent["id"], run_unlabeled=True)["runs"][0]
    # an unkeyed server: the plain state endpoint, as the run's own process would call it
    reported = requests.post(
        f"{server.url}/api/flow_runs/{run['id']}/state",
        json={"state": "Failed", "exit_code": 1},
        headers={"Authorization": f"Bearer {claimed['token']}"},
        timeout=30,
    )
    assert reported.status_code == 200
    retry = waiting(http, run)
    assert retry["reason"] == "retry_delay"
    assert retry["message"].startswith("attempt 2 waits out the flow's retry delay: due at ")


def test_listings_carry_the_reason_only_on_scheduled_runs(make_server: MakeApiServer) -> None:
    http = Http(make_server())
    http.flow()
    gpu = http.run(labels=["gpu"])
    plain = http.run()
    done = http.run()
    http.post(f"/api/flow_runs/{done['id']}/cancel")
    http.agent("h1", labels=["h1"])
    listed = {run["id"]: run for run in http.ok("get", "/api/flow_runs")}
    assert listed[gpu["id"]]["waiting"]["reason"] == "no_matching_agent"
    assert listed[plain["id"]]["waiting"]["reason"] == "unlabeled_run"
    assert "waiting" not in listed[done["id"]]  # not even null: older clients refuse fields they do not know
    assert "waiting" not in http.ok("get", f"/api/flow_runs/{done['id']}")
    # a claimed run (the reply agents read) carries no waiting either
    agent = http.agent("taker", labels=["gpu"])
    claimed = http.claim(agent["id"], labels=["gpu"])["runs"][0]
    assert claimed["run"]["id"] == gpu["id"]
    assert "waiting" not in claimed["run"]


@given(
    run_labels=st.lists(st.sampled_from("abcd"), max_size=3),
    agent_labels=st.lists(st.sampled_from("abcd"), max_size=3),
    run_unlabeled=st.booleans(),
)
def test_the_explainer_applies_the_claims_label_rule(
    run_labels: list[str], agent_labels: list[str], run_unlabeled: bool
) -> None:
    agent = _Online("id", "a", tuple(agent_labels), run_unlabeled, frozenset(), None, frozenset(agent_labels))
    assert agent.accepts(frozenset(run_labels)) == label_rule_accepts(run_labels, agent_labels, run_unlabeled)
