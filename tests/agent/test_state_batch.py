"""StateBatcher against a real API server: batching, refusals, fallback to run tokens, outages, giving up."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from localagent.agent.coordination.state_batch import DELIVERED, FALLBACK, GIVEN_UP, REFUSED, StateBatcher
from localagent.agent.retry import GiveUp
from localagent.agent.run.reporter import StateReporter
from localagent.api.client import ApiClient
from localagent.api.models import StateName, StateReport, StateReportResults, StateUpdate
from localagent.server.runner import ServerThread
from tests.conftest import MakeApiServer
from tests.server.helpers import Http

RUNNING = StateUpdate(state=StateName.RUNNING, pid=42)


class CountingApi:
    """The real client, with each batch's size noted (the seam where the test looks)."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api
        self.sizes: list[int] = []
        self._lock = threading.Lock()

    def set_states(self, reports: Sequence[StateReport]) -> StateReportResults:
        with self._lock:
            self.sizes.append(len(reports))
        return self.api.set_states(reports)


def test_reports_queued_together_share_requests(api_server: ServerThread) -> None:
    runs = Http(api_server).claimed_runs(40)
    with ApiClient(api_server.url) as client:
        api = CountingApi(client)
        batcher = StateBatcher(api)
        tickets = [batcher.submit(run["run"]["id"], RUNNING, GiveUp()) for run in runs]
        for ticket in tickets:
            assert ticket.wait(30)
        batcher.close()
    assert {ticket.outcome for ticket in tickets} == {DELIVERED}
    assert sum(api.sizes) == 40
    assert max(api.sizes) > 1, api.sizes
    http = Http(api_server)
    assert {http.ok("get", f"/api/flow_runs/{run['run']['id']}")["state"] for run in runs} == {"Running"}


def test_a_refused_report_is_not_retried_and_the_others_land(api_server: ServerThread) -> None:
    (run,) = Http(api_server).claimed_runs(1)
    run_id = run["run"]["id"]
    with ApiClient(api_server.url) as client:
        batcher = StateBatcher(client)
        bad = batcher.submit(run_id, StateUpdate(state=StateName.SUCCESS), GiveUp())  # Submitted -> Success
        unknown = batcher.submit("no-such-run", RUNNING, GiveUp())
        good = batcher.submit(run_id, RUNNING, GiveUp())
        for ticket in (bad, unknown, good):
            assert ticket.wait(30)
        batcher.close()
    assert (bad.outcome, unknown.outcome, good.outcome) == (REFUSED, REFUSED, DELIVERED)
    assert "cannot become Success" in bad.detail
    assert unknown.detail == "flow run 'no-such-run' not found"


def test_a_refused_batch_falls_back_to_the_run_token(make_api_server: MakeApiServer) -> None:
    server = make_api_server(api_keys=("good",))
    (run,) = Http(server, key="good").claimed_runs(1)
    run_id = run["run"]["id"]
    with ApiClient(server.url, key="revoked") as agent_client, ApiClient(server.url, key=run["token"]) as run_client:
        batcher = StateBatcher(agent_client)
        reporter = StateReporter(run_client, run_id, batcher=batcher)
        assert reporter.deliver(RUNNING)
        assert reporter.delivered == [RUNNING]
        # The batch itself was refused (401), so the report went alone, with the run's token.
        ticket = batcher.submit(run_id, RUNNING, GiveUp())
        assert ticket.wait(30) and ticket.outcome == FALLBACK
        batcher.close()
    assert Http(server, key="good").states(run_id) == ["Scheduled", "Submitted", "Running"]


def test_reports_wait_out_an_outage(make_api_server: MakeApiServer, tmp_path: Any) -> None:
    database = f"sqlite:///{tmp_path / 'outage.db'}"
    server = make_api_server(database_url=database)
    (run,) = Http(server).claimed_runs(1)
    run_id = run["run"]["id"]
    port = server.port
    server.stop()
    with ApiClient(server.url, retries=0, timeout=2.0) as client:
        batcher = StateBatcher(client, initial_backoff=0.1)
        ticket = batcher.submit(run_id, RUNNING, GiveUp())
        assert not ticket.wait(0.5)  # retrying while the API is down
        make_api_server(address=f"127.0.0.1:{port}", database_url=database)
        assert ticket.wait(30)
        batcher.close()
    assert ticket.outcome == DELIVERED
    assert Http(server).states(run_id)[-1] == "Running"


def test_giving_up_ends_the_retries(make_api_server: MakeApiServer) -> None:
    server = make_api_server()
    (run,) = Http(server).claimed_runs(1)
    server.stop()
    give_up = GiveUp()
    with ApiClient(server.url, retries=0, timeout=2.0) as client:
        batcher = StateBatcher(client, initial_backoff=0.1)
        ticket = batcher.submit(run["run"]["id"], RUNNING, give_up)
        assert not ticket.wait(0.3)
        give_up.set()
        assert ticket.wait(30)
        batcher.close()
    assert ticket.outcome == GIVEN_UP
