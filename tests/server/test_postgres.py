"""The server on PostgreSQL, shared by several server processes: atomic claims, log dedupe, retries, sweeps.

Skipped unless ``LOCALAGENT_TEST_POSTGRES_URL`` is set (``eval "$(.ci/postgres.sh)"``). Every test runs in
a fresh schema of a database made for this module.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from localagent.api.client import ApiClient
from localagent.api.models import FlowRunCreate, FlowSpec, LogLine, StateName
from localagent.server.database import Database
from localagent.server.runner import ServerThread
from localagent.server.services import Services
from localagent.server.settings import ServerSettings
from localagent.server.tables import flow_runs
from tests.e2e.support import Agent, wait_for, wait_state
from tests.pg.support import ServerProcess, pg_database, pg_url, requires_postgres
from tests.server.helpers import Http

pytestmark = requires_postgres
__all__ = ["pg_database", "pg_url"]  # fixtures used by name below

S = StateName
RUNS = 2000


@pytest.fixture
def two_servers(pg_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two ``localagent server`` processes started together on one fresh schema (both create it)."""
    servers = [ServerProcess(tmp_path, f"server-{i}", pg_url) for i in (1, 2)]
    try:
        yield servers[0].wait_serving(), servers[1].wait_serving()
    finally:
        for server in servers:
            server.stop()


def test_eight_claimers_on_two_server_processes_never_share_a_run(pg_url: str, two_servers: tuple[str, str]) -> None:
    urls = two_servers
    for url in urls:
        assert requests.get(url + "/api/health", timeout=10).json()["database"] == "postgresql"
    requests.post(urls[0] + "/api/flows", json={"name": "hello", "command": "true"}, timeout=10).raise_for_status()
    # Created in-process through the same store the endpoint uses, to keep the test quick.
    services = Services.build(ServerSettings(database_url=pg_url))
    try:
        with ThreadPoolExecutor(8) as pool:
            created = set(pool.map(lambda _: services.runs.create(FlowRunCreate(flow="hello")).id, range(RUNS)))
    finally:
        services.database.dispose()
    claimed_by: dict[str, list[str]] = {}
    through: Counter[int] = Counter()
    lock = threading.Lock()
    errors: list[str] = []

    def claimer(index: int) -> None:
        session = requests.Session()
        url = urls[index % 2]
        agent = session.post(url + "/api/agents", json={"name": f"agent-{index}"}, timeout=10).json()["id"]
        empty = 0
        while empty < 2:
            reply = session.post(f"{url}/api/agents/{agent}/claim", json={"slots": 16}, timeout=30)
            if reply.status_code != 200:
                errors.append(f"{reply.status_code} {reply.text}")
                return
            runs = reply.json()["runs"]
            empty = 0 if runs else empty + 1
            with lock:
                through[index % 2] += len(runs)
                for run in runs:
                    claimed_by.setdefault(run["run"]["id"], []).append(agent)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert {run_id: agents for run_id, agents in claimed_by.items() if len(agents) > 1} == {}
    assert set(claimed_by) == created
    assert through[0] > 0 and through[1] > 0  # both processes handed out runs
    database = Database(pg_url)
    with database.connect() as conn:
        rows = conn.execute(sa.select(flow_runs.c.id, flow_runs.c.state, flow_runs.c.agent_id)).all()
    database.dispose()
    assert Counter(row.state for row in rows) == {S.SUBMITTED.value: RUNS}
    assert {row.id: [row.agent_id] for row in rows} == claimed_by


def test_concurrent_schema_creation_and_flow_versions(pg_url: str) -> None:
    with ThreadPoolExecutor(6) as pool:
        databases = list(pool.map(lambda _: Database(pg_url), range(6)))
    for database in databases:
        database.dispose()
    with (
        ServerThread(address="127.0.0.1:0", database_url=pg_url) as one,
        ServerThread(address="127.0.0.1:0", database_url=pg_url) as other,
    ):
        apis = [ApiClient(one.url, retries=0), ApiClient(other.url, retries=0)]
        specs = [FlowSpec(name="etl", command=f"echo {i}") for i in range(8)]
        with ThreadPoolExecutor(8) as pool:
            flows = list(pool.map(lambda i: apis[i % 2].register_flow(specs[i]), range(8)))
        assert sorted(flow.version for flow in flows) == list(range(1, 9))
        latest = apis[1].get_flow("etl")
        assert latest.version == 8
        # The latest spec again, through the other server: no new version.
        assert apis[0].register_flow(FlowSpec(name="etl", command=latest.command)).version == 8
        assert [flow.name for flow in apis[1].list_flows()] == ["etl"]


def _lines(seqs: range, prefix: str) -> list[LogLine]:
    now = datetime.now(timezone.utc)
    return [LogLine(seq=seq, time=now, stream="stdout", text=f"{prefix} {seq}") for seq in seqs]


def test_resent_log_lines_are_stored_once_across_servers(pg_url: str) -> None:
    with (
        ServerThread(address="127.0.0.1:0", database_url=pg_url) as one,
        ServerThread(address="127.0.0.1:0", database_url=pg_url) as other,
    ):
        first, second = ApiClient(one.url, retries=0), ApiClient(other.url, retries=0)
        first.register_flow(FlowSpec(name="hello", command="true"))
        run = first.create_run(FlowRunCreate(flow="hello"))
        assert first.append_logs(run.id, _lines(range(0, 5), "line")).model_dump() == {"stored": 5, "last_seq": 4}
        assert second.append_logs(run.id, _lines(range(3, 8), "resent")).model_dump() == {"stored": 3, "last_seq": 7}
        # The same batch sent through both servers at once is still stored once.
        batch = _lines(range(8, 1008), "race")
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda api: api.append_logs(run.id, batch), [first, second, first, second]))
        assert sum(result.stored for result in results) == 1000
        # PostgreSQL text cannot hold NUL; the line is kept with a replacement character instead.
        nul = LogLine(seq=1008, time=datetime.now(timezone.utc), stream="stderr", text="a\x00b")
        assert second.append_logs(run.id, [nul]).stored == 1
        page = first.read_logs(run.id, after=-1, limit=2000)
        assert [line.seq for line in page.lines] == list(range(1009))
        assert [line.text for line in page.lines[:8]] == [f"line {i}" for i in range(5)] + [
            f"resent {i}" for i in range(5, 8)
        ]
        assert page.lines[-1].text == "a\ufffdb"


def test_a_failed_run_is_retried_and_claimed_through_the_other_server(pg_url: str) -> None:
    with (
        ServerThread(address="127.0.0.1:0", database_url=pg_url) as one,
        ServerThread(address="127.0.0.1:0", database_url=pg_url) as other,
    ):
        first, second = Http(one), Http(other)
        first.flow(retries=1, retry_delay=0)
        run = first.run()["id"]
        agent = second.agent()["id"]
        assert [c["run"]["id"] for c in second.claim(agent)["runs"]] == [run]
        assert first.state(run, "Running", pid=42).status_code == 200
        assert second.state(run, "Failed", exit_code=3).status_code == 200
        retried = first.ok("get", f"/api/flow_runs/{run}")
        assert (retried["state"], retried["attempt"]) == ("Scheduled", 2)
        assert [c["run"]["attempt"] for c in first.claim(agent)["runs"]] == [2]
        assert second.state(run, "Running").status_code == 200
        assert first.state(run, "Success", exit_code=0).status_code == 200
        assert first.states(run) == [
            "Scheduled", "Submitted", "Running", "Failed", "Scheduled", "Submitted", "Running", "Success",
        ]  # fmt: skip


def test_batched_state_reports_on_postgresql(pg_url: str) -> None:
    with ServerThread(address="127.0.0.1:0", database_url=pg_url) as server:
        http = Http(server)
        http.flow()
        runs = [http.run()["id"] for _ in range(3)]
        agent = http.agent()["id"]
        assert len(http.claim(agent, slots=3)["runs"]) == 3
        reports = [{"run_id": run, "state": "Running", "pid": 7} for run in runs]
        reports += [{"run_id": runs[0], "state": "Success", "message": "a NUL \x00 in a message"}]
        reports += [{"run_id": "missing", "state": "Running"}]
        reply = http.post("/api/flow_runs/states", json={"reports": reports})
        assert reply.status_code == 200, reply.text
        assert [r["status"] for r in reply.json()["results"]] == [200, 200, 200, 200, 404]
        done = http.ok("get", f"/api/flow_runs/{runs[0]}")
        assert (done["state"], done["state_message"]) == ("Success", "a NUL \ufffd in a message")
        assert http.states(runs[1]) == ["Scheduled", "Submitted", "Running"]
        # The single-run endpoint stores it the same way (it used to answer 422).
        alone = http.ok("post", f"/api/flow_runs/{runs[1]}/state", json={"state": "Failed", "message": "x\x00y"})
        assert (alone["state"], alone["state_message"]) == ("Failed", "x\ufffdy")


def test_a_claim_waiting_on_one_server_gets_a_run_created_on_the_other(pg_url: str) -> None:
    with (
        ServerThread(address="127.0.0.1:0", database_url=pg_url) as one,
        ServerThread(address="127.0.0.1:0", database_url=pg_url) as other,
    ):
        first, second = Http(one), Http(other)
        first.flow()
        agent = second.agent()["id"]
        result: list[dict[str, object]] = []
        waiter = threading.Thread(target=lambda: result.append(second.claim(agent, wait=20)))
        waiter.start()
        wait_for(lambda: other.app.state.services.notifier._subscribers.get("runs"), what="the claim to wait")
        run = first.run()["id"]  # no in-process wake-up reaches the other server: its re-check must find it
        waiter.join(25)
        assert not waiter.is_alive()
        assert [c["run"]["id"] for c in result[0]["runs"]] == [run]  # type: ignore[attr-defined]


def test_lost_agent_runs_go_unknown_and_are_replaced_once_with_two_sweepers(pg_url: str) -> None:
    servers = [
        ServerThread(address="127.0.0.1:0", database_url=pg_url, agent_timeout=1.0, sweep_interval=0.1)
        for _ in range(2)
    ]
    for server in servers:
        server.start()
    try:
        http = Http(servers[0])
        http.flow(retries=1, retry_delay=3600, retry_lost=True)
        runs = [http.run()["id"] for _ in range(20)]
        policy = {"on_api_lost": "stop", "api_lost_after": 0.2, "stop_grace": 0.1, "beat_interval": 0.1}
        agent = http.agent(lost_policy=policy)["id"]
        assert len(http.claim(agent, slots=20)["runs"]) == 20
        for run in runs[:10]:
            assert http.state(run, "Running").status_code == 200
        # The agent goes silent; both servers' sweeps see it lost.
        for run in runs:
            wait_state(ApiClient(servers[1].url, retries=0), run, [S.SCHEDULED], timeout=20)
        for run in runs:
            history = http.states(run)
            assert history.count("Unknown") == 1 and history.count("Crashed") == 1, history
            assert history[-3:] == ["Unknown", "Crashed", "Scheduled"]
            assert http.ok("get", f"/api/flow_runs/{run}")["attempt"] == 2
    finally:
        for server in servers:
            server.stop()


def test_a_full_run_through_the_client_and_a_real_agent(
    pg_url: str, two_servers: tuple[str, str], tmp_path: Path
) -> None:
    create_through, agent_through = two_servers
    api = ApiClient(create_through, retries=0)
    agent = Agent(tmp_path, "pg-agent", {"api": {"url": agent_through}, "logs": {"level": "WARNING"}})
    try:
        agent.wait_registered(ApiClient(agent_through, retries=0))
        api.register_flow(FlowSpec(name="greet", command='echo "hello $LOCALAGENT_PARAMETERS"; echo oops >&2'))
        run = api.create_run(FlowRunCreate(flow="greet", parameters={"WHO": "pg"}))
        finished = wait_state(api, run.id, [S.SUCCESS, S.FAILED, S.CRASHED], timeout=30)
        assert finished.state is S.SUCCESS, finished.history
        assert finished.agent_name == "pg-agent"
        assert [record.state for record in finished.history] == [S.SCHEDULED, S.SUBMITTED, S.RUNNING, S.SUCCESS]
        page = api.read_logs(run.id, wait=5)
        assert page.finished
        assert {(line.stream, line.text) for line in page.lines} >= {
            ("stdout", 'hello {"WHO": "pg"}'),
            ("stderr", "oops"),
        }
    finally:
        agent.signal(15)
        agent.wait()
