"""Claims: atomic hand-out under concurrency, the label rule, run-config types, slots, schedules, long-poll."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
import requests
import sqlalchemy as sa

from localagent.api.models import FlowRunCreate
from localagent.server.runner import ServerThread
from localagent.server.tables import flow_runs
from tests.conftest import MakeApiServer
from tests.server.helpers import Http


def test_eight_concurrent_claimers_never_share_a_run(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow()
    total = 2000
    # Created in-process (same code path as POST /api/flow_runs minus HTTP) to keep the test quick.
    runs = api_server.app.state.services.runs
    created = {runs.create(FlowRunCreate(flow="hello")).id for _ in range(total)}
    claims: Counter[str] = Counter()
    claimed_by: dict[str, str] = {}
    lock = threading.Lock()
    errors: list[str] = []

    def claimer(index: int) -> None:
        worker = Http(api_server)
        agent = worker.agent(f"agent-{index}")["id"]
        empty = 0
        while empty < 2:
            reply = worker.post(f"/api/agents/{agent}/claim", json={"slots": 16})
            if reply.status_code != 200:
                errors.append(f"{reply.status_code} {reply.text}")
                return
            runs = reply.json()["runs"]
            empty = 0 if runs else empty + 1
            with lock:
                claims.update(run["run"]["id"] for run in runs)
                claimed_by.update((run["run"]["id"], agent) for run in runs)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(100)
    assert errors == []
    assert [run_id for run_id, count in claims.items() if count > 1] == []
    assert set(claims) == created
    # What was stored agrees with what was handed out: each run Submitted to the agent whose claim got it.
    with api_server.app.state.services.database.connect() as conn:
        stored = conn.execute(sa.select(flow_runs.c.id, flow_runs.c.state, flow_runs.c.agent_id)).all()
    assert Counter(row.state for row in stored) == {"Submitted": total}
    assert {row.id: row.agent_id for row in stored} == claimed_by
    assert http.ok("get", "/api/flow_runs", params={"state": "Scheduled"}) == []


@pytest.mark.parametrize(
    ("run_labels", "agent_labels", "run_unlabeled", "claimed"),
    [
        ([], [], False, True),  # unlabeled run, unlabeled agent
        ([], ["etl"], False, False),  # unlabeled run needs run_unlabeled on a labeled agent
        ([], ["etl"], True, True),
        (["etl"], ["etl", "gpu"], False, True),  # every run label is an agent label
        (["etl", "gpu"], ["etl"], False, False),
        (["etl"], [], True, False),  # run_unlabeled does not take labeled runs
    ],
)
def test_label_rule(
    api_server: ServerThread, run_labels: list[str], agent_labels: list[str], run_unlabeled: bool, claimed: bool
) -> None:
    http = Http(api_server)
    http.flow()
    run = http.run(labels=run_labels)
    agent = http.agent(labels=agent_labels)["id"]
    reply = http.claim(agent, labels=agent_labels, run_unlabeled=run_unlabeled)
    assert [c["run"]["id"] for c in reply["runs"]] == ([run["id"]] if claimed else [])


def test_labels_from_flow_and_run_config_count(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow(labels=["etl"], run_config={"labels": ["linux"]})
    run = http.run(labels=["big"])
    agent = http.agent()["id"]
    assert http.claim(agent, labels=["etl", "big"])["runs"] == []
    assert http.claim(agent, labels=["etl", "linux"])["runs"] == []
    assert http.claim(agent, labels=["etl", "linux", "big"])["runs"][0]["run"]["id"] == run["id"]


def test_only_supported_run_config_types(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow("boxed", run_config={"type": "docker"})
    http.flow("plain", run_config={"type": "local"})
    docker_run = http.run("boxed")
    local_run = http.run("plain")
    agent = http.agent()["id"]
    got = http.claim(agent, slots=5, run_config_types=["universal", "local"])["runs"]
    assert [c["run"]["id"] for c in got] == [local_run["id"]]
    assert http.claim(agent, slots=5, run_config_types=[])["runs"] == []
    assert http.claim(agent, slots=5, run_config_types=["docker"])["runs"][0]["run"]["id"] == docker_run["id"]


def test_slots_limit_and_schedule(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow()
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    future = http.run(scheduled_start=later)
    due = [http.run()["id"] for _ in range(3)]
    agent = http.agent()["id"]
    assert http.claim(agent, slots=0)["runs"] == []
    first = http.claim(agent, slots=2)["runs"]
    assert [c["run"]["id"] for c in first] == due[:2]
    rest = http.claim(agent, slots=10)["runs"]
    assert [c["run"]["id"] for c in rest] == due[2:]
    assert http.ok("get", f"/api/flow_runs/{future['id']}")["state"] == "Scheduled"


def test_claim_returns_flow_token_and_next_log_seq(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow(retries=1, parameters={"a": 1})
    run = http.run()
    agent = http.agent()["id"]
    claimed = http.claim(agent)["runs"][0]
    assert claimed["flow"]["name"] == "hello"
    assert claimed["flow"]["parameters"] == {"a": 1}
    assert claimed["next_log_seq"] == 0
    assert len(claimed["token"]) > 20
    lines = [{"seq": i, "time": datetime.now(timezone.utc).isoformat(), "text": f"l{i}"} for i in range(3)]
    http.ok("post", f"/api/flow_runs/{run['id']}/logs", json={"lines": lines})
    http.state(run["id"], "Crashed")
    again = http.claim(agent)["runs"][0]
    assert again["next_log_seq"] == 3
    assert again["token"] != claimed["token"]


def test_unknown_agent_is_404(api_server: ServerThread) -> None:
    reply = Http(api_server).post("/api/agents/nope/claim", json={"slots": 1})
    assert reply.status_code == 404
    assert "register it again" in reply.json()["detail"]


def _claim_in_background(http: Http, agent: str, **body: object) -> tuple[threading.Thread, list[dict[str, object]]]:
    result: list[dict[str, object]] = []

    def run() -> None:
        result.append(http.ok("post", f"/api/agents/{agent}/claim", json=body))

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def _wait_until_polling(server: ServerThread, count: int = 1) -> None:
    # A long-poll is open once it subscribed to the notifier; no sleep-and-hope.
    notifier = server.app.state.services.notifier
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if len(notifier._subscribers.get("runs", ())) >= count:
            return
        time.sleep(0.01)
    raise AssertionError("the claim never started waiting")


def test_new_run_wakes_an_open_claim(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow()
    agent = http.agent()["id"]
    thread, result = _claim_in_background(Http(api_server), agent, slots=1, wait=25)
    _wait_until_polling(api_server)
    run = http.run()
    thread.join(20)
    assert not thread.is_alive()
    assert [c["run"]["id"] for c in result[0]["runs"]] == [run["id"]]  # type: ignore[union-attr, index]


def test_cancel_wakes_the_owning_agents_open_claim(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow()
    run = http.run()
    agent = http.agent()["id"]
    http.claim(agent)
    http.state(run["id"], "Running")
    thread, result = _claim_in_background(Http(api_server), agent, slots=0, wait=25)
    _wait_until_polling(api_server)
    http.post(f"/api/flow_runs/{run['id']}/cancel")
    thread.join(20)
    assert not thread.is_alive()
    assert result[0]["cancel"] == [run["id"]]
    # Delivered once: the next claim waits again instead of returning at once (no busy loop) ...
    thread, result = _claim_in_background(Http(api_server), agent, slots=0, wait=0.5)
    thread.join(20)
    assert result[0]["cancel"] == [run["id"]]
    # ... and the heartbeat keeps repeating it until the agent reports a final state.
    beat = http.ok("post", f"/api/agents/{agent}/heartbeat", json={"running_runs": [run["id"]]})
    assert beat["cancel"] == [run["id"]]


def test_claim_waits_at_most_wait(api_server: ServerThread) -> None:
    http = Http(api_server)
    agent = http.agent()["id"]
    assert http.claim(agent, slots=4, wait=0.3) == {"runs": [], "cancel": []}


def test_run_token_cannot_claim(make_api_server: MakeApiServer) -> None:
    server = make_api_server(api_keys=("k",))
    http = Http(server, key="k")
    http.flow()
    http.run()
    agent = http.agent()["id"]
    token = http.claim(agent)["runs"][0]["token"]
    reply = requests.post(
        f"{server.url}/api/agents/{agent}/claim",
        json={"slots": 1},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert reply.status_code == 403
