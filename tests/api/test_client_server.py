"""ApiClient against the real API server (tests/conftest.py's ``api_server``): the whole life of a run."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from localagent.api.client import ApiClient
from localagent.api.models import (
    AgentRegister,
    ClaimRequest,
    FlowRunCreate,
    FlowSpec,
    Heartbeat,
    LogLine,
    StateName,
    StateUpdate,
)
from localagent.errors import ApiConflict, ApiNotFound, ApiRejected, ApiUnauthorized


def lines(start: int, *texts: str) -> list[LogLine]:
    now = datetime.now(timezone.utc)
    return [LogLine(seq=start + i, time=now, text=text) for i, text in enumerate(texts)]


@pytest.fixture
def api(api_server: Any) -> ApiClient:
    with ApiClient(api_server.url, timeout=10.0) as client:
        yield client  # type: ignore[misc]


def test_health(api: ApiClient) -> None:
    health = api.health()
    assert health.status == "ok"
    assert health.database == "sqlite"


def test_flow_versions_only_change_with_the_flow(api: ApiClient) -> None:
    first = api.register_flow(FlowSpec(name="report", command=["python", "report.py"], retry_delay="1m"))
    again = api.register_flow(FlowSpec(name="report", command=["python", "report.py"], retry_delay=60))
    changed = api.register_flow(FlowSpec(name="report", command="python report.py --all"))
    assert (first.version, again.version, changed.version) == (1, 1, 2)
    assert first.retry_delay == 60.0
    assert api.get_flow("report", version=1).command == ["python", "report.py"]
    assert api.get_flow("report").command == "python report.py --all"
    assert [flow.name for flow in api.list_flows()] == ["report"]


def test_unknown_names_are_not_found(api: ApiClient) -> None:
    with pytest.raises(ApiNotFound, match="'nope'"):
        api.get_flow("nope")
    with pytest.raises(ApiNotFound):
        api.create_run(FlowRunCreate(flow="nope"))
    with pytest.raises(ApiNotFound):
        api.get_run("no-such-run")


def test_runs_are_created_listed_and_cancelled(api: ApiClient) -> None:
    api.register_flow(FlowSpec(name="a", command="true", parameters={"day": "today", "n": 1}))
    api.register_flow(FlowSpec(name="b", command="true"))
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    run = api.create_run(FlowRunCreate(flow="a", parameters={"n": 2}, labels=["x"], scheduled_start=later))
    other = api.create_run(FlowRunCreate(flow="b"))
    assert run.state is StateName.SCHEDULED
    assert run.parameters == {"day": "today", "n": 2}
    assert run.labels == ["x"]
    assert abs((run.scheduled_start - later).total_seconds()) < 1
    assert [r.id for r in api.list_runs(flow="a")] == [run.id]
    assert {r.id for r in api.list_runs(state=StateName.SCHEDULED)} == {run.id, other.id}
    assert len(api.list_runs(limit=1)) == 1

    cancelled = api.cancel_run(run.id)
    assert cancelled.state is StateName.CANCELLED
    assert [record.state for record in api.get_run(run.id).history] == [StateName.SCHEDULED, StateName.CANCELLED]
    with pytest.raises(ApiConflict):
        api.cancel_run(run.id)


def test_an_agent_claims_runs_reports_states_and_ships_logs(api: ApiClient) -> None:
    api.register_flow(FlowSpec(name="hello", command="echo hi"))
    run = api.create_run(FlowRunCreate(flow="hello"))
    agent = api.register_agent(AgentRegister(name="host-1", run_unlabeled=True, config_generation=3))
    assert api.heartbeat(agent.id, Heartbeat(run_unlabeled=True, config_generation=3)).cancel == []

    reply = api.claim(agent.id, ClaimRequest(slots=4, wait=0, run_unlabeled=True))
    assert [claimed.run.id for claimed in reply.runs] == [run.id]
    claimed = reply.runs[0]
    assert claimed.run.state is StateName.SUBMITTED
    assert claimed.flow.command == "echo hi"
    assert api.claim(agent.id, ClaimRequest(slots=4, wait=0, run_unlabeled=True)).runs == []

    with ApiClient(api.url, key=claimed.token) as run_api:
        running = run_api.set_state(run.id, StateUpdate(state=StateName.RUNNING, pid=4242))
        assert running.pid == 4242
        assert run_api.set_state(run.id, StateUpdate(state=StateName.RUNNING, pid=4242)).state is StateName.RUNNING
        first = run_api.append_logs(run.id, lines(0, "one", "two"))
        resent = run_api.append_logs(run.id, lines(0, "one", "two", "three"))
        assert (first.stored, resent.stored, resent.last_seq) == (2, 1, 2)
        page = run_api.read_logs(run.id, after=0)
        assert [line.text for line in page.lines] == ["two", "three"]
        assert not page.finished
        done = run_api.set_state(run.id, StateUpdate(state=StateName.SUCCESS, exit_code=0))
    assert done.state is StateName.SUCCESS
    assert done.exit_code == 0
    final_page = api.read_logs(run.id, after=page.next_after)
    assert final_page.finished
    assert final_page.lines == []
    assert [a.name for a in api.list_agents()] == ["host-1"]


def test_an_illegal_transition_is_a_conflict(api: ApiClient) -> None:
    api.register_flow(FlowSpec(name="hello", command="true"))
    run = api.create_run(FlowRunCreate(flow="hello"))
    agent = api.register_agent(AgentRegister(name="host-1", run_unlabeled=True))
    claimed = api.claim(agent.id, ClaimRequest(slots=1, run_unlabeled=True)).runs[0]
    with ApiClient(api.url, key=claimed.token) as run_api, pytest.raises(ApiConflict, match="cannot become Success"):
        run_api.set_state(run.id, StateUpdate(state=StateName.SUCCESS, exit_code=0))
    assert claimed.run.id == run.id
    assert api.get_run(run.id).state is StateName.SUBMITTED


def test_read_logs_long_poll_returns_lines_that_arrive_while_waiting(api: ApiClient) -> None:
    api.register_flow(FlowSpec(name="hello", command="true"))
    run = api.create_run(FlowRunCreate(flow="hello"))
    agent = api.register_agent(AgentRegister(name="host-1", run_unlabeled=True))
    claimed = api.claim(agent.id, ClaimRequest(slots=1, run_unlabeled=True)).runs[0]
    writer = threading.Timer(0.3, lambda: api.append_logs(run.id, lines(0, "late line")))
    writer.start()
    try:
        page = api.read_logs(run.id, wait=20)
    finally:
        writer.join()
    assert claimed.run.id == run.id
    assert [line.text for line in page.lines] == ["late line"]


def test_a_server_with_keys_refuses_a_client_without_one(make_api_server: Any) -> None:
    server = make_api_server(api_keys=("k1",))
    with ApiClient(server.url) as anonymous, pytest.raises(ApiUnauthorized) as caught:
        anonymous.list_flows()
    assert caught.value.status_code == 401
    with ApiClient(server.url, key="k1") as keyed:
        assert keyed.list_flows() == []
        assert keyed.health().status == "ok"


def test_a_run_token_reaches_only_its_own_run(make_api_server: Any) -> None:
    server = make_api_server(api_keys=("k1",))
    with ApiClient(server.url, key="k1") as api:
        api.register_flow(FlowSpec(name="hello", command="true"))
        run = api.create_run(FlowRunCreate(flow="hello"))
        other = api.create_run(FlowRunCreate(flow="hello"))
        agent = api.register_agent(AgentRegister(name="host-1", run_unlabeled=True))
        claimed = api.claim(agent.id, ClaimRequest(slots=1, run_unlabeled=True)).runs[0]
    with ApiClient(server.url, key=claimed.token) as run_api:
        assert run_api.get_run(claimed.run.id).state is StateName.SUBMITTED
        run_api.append_logs(claimed.run.id, lines(0, "mine"))
        not_mine = other.id if claimed.run.id == run.id else run.id
        with pytest.raises(ApiUnauthorized):
            run_api.get_run(not_mine)
        with pytest.raises(ApiUnauthorized):
            run_api.list_flows()


def test_scoped_clients_share_one_pool_with_their_own_keys(make_api_server: Any) -> None:
    server = make_api_server(api_keys=("k1",))
    with ApiClient(server.url, key="k1") as api:
        api.register_flow(FlowSpec(name="hello", command="true"))
        runs = [api.create_run(FlowRunCreate(flow="hello")) for _ in range(2)]
        agent = api.register_agent(AgentRegister(name="host-1", run_unlabeled=True))
        claimed = api.claim(agent.id, ClaimRequest(slots=2, run_unlabeled=True)).runs
        assert {c.run.id for c in claimed} == {r.id for r in runs}
        scoped = [api.scoped(c.token) for c in claimed]
        errors: list[BaseException] = []

        def report(client: ApiClient, run_id: str) -> None:
            try:
                for _ in range(20):
                    client.set_state(run_id, StateUpdate(state=StateName.RUNNING, pid=7))
            except BaseException as exc:  # surfaced by the assert below
                errors.append(exc)

        threads = [threading.Thread(target=report, args=(s, c.run.id)) for s, c in zip(scoped, claimed, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        # each token reaches only its own run, although the connections are shared
        with pytest.raises(ApiUnauthorized):
            scoped[0].get_run(claimed[1].run.id)
        with pytest.raises(ApiUnauthorized):
            scoped[0].list_flows()
        scoped[0].close()  # closing a scoped client leaves the shared pool to the others
        assert scoped[1].get_run(claimed[1].run.id).state is StateName.RUNNING
        assert api.list_flows()[0].name == "hello"
        assert api.scoped("not-a-key")._session is api._session


def test_pre_encoded_log_batches_are_stored_like_models(api: ApiClient) -> None:
    api.register_flow(FlowSpec(name="raw", command="true"))
    run = api.create_run(FlowRunCreate(flow="raw"))
    agent = api.register_agent(AgentRegister(name="host-1", run_unlabeled=True))
    claimed = api.claim(agent.id, ClaimRequest(slots=1, wait=0, run_unlabeled=True)).runs[0]
    body = json.dumps(
        {
            "lines": [
                {"seq": 0, "time": "2026-01-01T00:00:00+00:00", "stream": "stdout", "text": "ünïcode"},
                {"seq": 1, "time": "2026-01-01T00:00:01+00:00", "stream": "stderr", "text": "two"},
            ]
        },
        ensure_ascii=False,
    ).encode()
    run_api = api.scoped(claimed.token)
    assert run_api.append_logs_raw(run.id, body, 2).stored == 2
    assert run_api.append_logs_raw(run.id, body, 2).stored == 0  # a resend is stored once
    page = run_api.read_logs(run.id)
    assert [(line.stream, line.text) for line in page.lines] == [("stdout", "ünïcode"), ("stderr", "two")]
    with pytest.raises(ApiRejected):
        run_api.append_logs_raw(run.id, b'{"lines": [{"seq": -1}]}', 1)
