"""InProcessClient: the agent's calls to its embedded API go straight to the stores of a real server."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from localagent.api.client import ApiClient
from localagent.api.models import (
    AgentRegister,
    ClaimRequest,
    FlowRunCreate,
    FlowSpec,
    Heartbeat,
    StateName,
    StateReport,
    StateUpdate,
)
from localagent.config.loader import load_config
from localagent.embedded.api import EmbeddedApi
from localagent.embedded.inprocess import InProcessClient
from localagent.errors import ApiConflict, ApiNotFound, ApiRejected, ApiUnauthorized, ApiUnavailable
from localagent.server.runner import ServerThread
from tests.conftest import MakeApiServer

KEY = "operator-key"


@pytest.fixture
def keyed(make_api_server: MakeApiServer) -> ServerThread:
    """A server that refuses every HTTP call without its key: a keyless call that works did not use HTTP."""
    return make_api_server(api_keys=(KEY,))


def _located(server: ServerThread) -> InProcessClient:
    http = ApiClient(server.url, key=None, timeout=5.0)
    return InProcessClient(http, timeout=5.0, locate=lambda url: server if url == server.url else None)


def _unlocated(url: str, timeout: float) -> InProcessClient:
    """A client whose look-up never finds a server at its url: every call goes over HTTP."""
    return InProcessClient(ApiClient(url, key=None, timeout=timeout), timeout=timeout, locate=lambda _url: None)


def _log_body(*texts: str, first_seq: int = 0) -> bytes:
    now = datetime.now(timezone.utc).isoformat()
    lines = [{"seq": first_seq + i, "time": now, "stream": "stdout", "text": t} for i, t in enumerate(texts)]
    return json.dumps({"lines": lines}).encode()


def test_the_per_run_calls_skip_http(keyed: ServerThread) -> None:
    with ApiClient(keyed.url, key=KEY) as admin, _located(keyed) as client:
        with pytest.raises(ApiUnauthorized), ApiClient(keyed.url) as keyless:  # over HTTP no key is refused
            keyless.list_flows()
        admin.register_flow(FlowSpec(name="job", command=["true"]))
        run = admin.create_run(FlowRunCreate(flow="job"))
        agent = client.register_agent(AgentRegister(name="inproc", run_unlabeled=True))
        reply = client.claim(agent.id, ClaimRequest(slots=2, wait=5, run_unlabeled=True))
        assert [claimed.run.id for claimed in reply.runs] == [run.id]
        results = client.set_states([StateReport(run_id=run.id, state=StateName.RUNNING, pid=123)])
        assert [(r.run_id, r.status) for r in results.results] == [(run.id, 200)]
        assert client.append_logs_raw(run.id, _log_body("one", "two"), 2).stored == 2
        assert client.heartbeat(agent.id, Heartbeat(running_runs=[run.id])).cancel == []
        final = client.scoped("any-token").set_state(run.id, StateUpdate(state=StateName.SUCCESS, exit_code=0))
        assert final.state == StateName.SUCCESS
        stored = admin.get_run(run.id)
        assert (stored.state, stored.pid, stored.exit_code) == (StateName.SUCCESS, 123, 0)
        assert [line.text for line in admin.read_logs(run.id).lines] == ["one", "two"]


def test_a_claim_long_polls_on_the_server_and_wakes_on_a_new_run(api_server: ServerThread) -> None:
    with ApiClient(api_server.url) as admin, _located(api_server) as client:
        admin.register_flow(FlowSpec(name="job", command=["true"]))
        agent = client.register_agent(AgentRegister(name="inproc", run_unlabeled=True))
        created: list[str] = []
        timer = threading.Timer(0.3, lambda: created.append(admin.create_run(FlowRunCreate(flow="job")).id))
        timer.start()
        reply = client.claim(agent.id, ClaimRequest(slots=1, wait=20, run_unlabeled=True))
        timer.join()
    # The run did not exist when the claim was asked: the claim waited on the server and woke for it.
    assert [claimed.run.id for claimed in reply.runs] == created


def test_errors_are_those_an_http_client_sees(api_server: ServerThread) -> None:
    with ApiClient(api_server.url) as admin, _located(api_server) as client:
        with pytest.raises(ApiNotFound, match="register it again"):
            client.claim("no-such-agent", ClaimRequest(slots=1, wait=0, run_unlabeled=True))
        with pytest.raises(ApiNotFound, match="not found"):
            client.set_state("no-such-run", StateUpdate(state=StateName.RUNNING))
        admin.register_flow(FlowSpec(name="job", command=["true"]))
        run = admin.create_run(FlowRunCreate(flow="job"))
        with pytest.raises(ApiConflict):  # Scheduled cannot jump to Success
            client.set_state(run.id, StateUpdate(state=StateName.SUCCESS))
        with pytest.raises(ApiRejected, match="integer out of range") as caught:
            client.set_state(run.id, StateUpdate(state=StateName.RUNNING, pid=2**70))
        assert caught.value.status_code == 422
        with pytest.raises(ApiRejected, match="lines") as bad_logs:
            client.append_logs_raw(run.id, b'{"lines": "nope"}', 1)
        assert bad_logs.value.status_code == 422
        results = client.set_states([StateReport(run_id="gone", state=StateName.RUNNING)]).results
        assert [(r.run_id, r.status) for r in results] == [("gone", 404)]


def test_with_no_server_at_its_url_it_goes_over_http(api_server: ServerThread) -> None:
    url = api_server.url
    client = _unlocated(url, 0.5)
    with ApiClient(url) as admin, client:
        admin.register_flow(FlowSpec(name="job", command=["true"]))
        agent = client.register_agent(AgentRegister(name="http", run_unlabeled=True))  # works over HTTP too
        assert client.heartbeat(agent.id, Heartbeat()).cancel == []
        api_server.stop()
        with pytest.raises(ApiUnavailable, match="cannot reach"):
            client.claim(agent.id, ClaimRequest(slots=1, wait=0, run_unlabeled=True))


def test_a_stopped_server_is_not_called_in_process(api_server: ServerThread) -> None:
    client = _located(api_server)
    with client:
        agent = client.register_agent(AgentRegister(name="inproc", run_unlabeled=True))
        api_server.stop()  # the look-up still names it, but its loop is gone: HTTP, which is refused
        with pytest.raises(ApiUnavailable):
            client.heartbeat(agent.id, Heartbeat())


def test_the_embedded_api_hands_out_in_process_clients_for_its_own_listeners(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    config_file = tmp_path / "agent.toml"
    config_file.write_text(f'[agent]\nstate_dir = "{state}"\n[server]\naddress = "127.0.0.1:0"\n')
    embedded = EmbeddedApi()
    url = embedded.start(load_config([config_file]))
    try:
        own = embedded.client(url, None, 5.0)
        other = embedded.client("http://127.0.0.1:9", None, 5.0)
        assert isinstance(own, InProcessClient)
        assert type(other) is ApiClient
        assert own.register_agent(AgentRegister(name="embedded")).name == "embedded"
        own.close()
        other.close()
    finally:
        embedded.stop()


def test_log_rows_are_stored_in_process_and_over_http_without_a_listener(api_server: ServerThread) -> None:
    now = time.time()
    with ApiClient(api_server.url) as admin:
        admin.register_flow(FlowSpec(name="job", command=["true"]))
        run = admin.create_run(FlowRunCreate(flow="job"))
        direct = _located(api_server)
        over_http = _unlocated(api_server.url, 5.0)
        with direct, over_http:
            rows = [(run.id, 0, now, "stdout", "in process"), (run.id, 1, now, "stderr", "é \ufffd")]
            assert direct.append_log_rows(run.id, rows).stored == 2
            assert over_http.append_log_rows(run.id, [(run.id, 2, now + 1, "stdout", "over http")]).stored == 1
            assert direct.append_log_rows(run.id, rows).stored == 0  # a resent seq is stored once
            with pytest.raises(ApiNotFound):
                direct.append_log_rows("gone", [("gone", 0, now, "stdout", "x")])
        lines = admin.read_logs(run.id).lines
    assert [(line.seq, line.stream, line.text) for line in lines] == [
        (0, "stdout", "in process"),
        (1, "stderr", "é \ufffd"),
        (2, "stdout", "over http"),
    ]
    assert abs(lines[2].time.timestamp() - (now + 1)) < 0.001
