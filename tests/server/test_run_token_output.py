"""A run token may add output to its run until the run's output is complete (the run is in a final
state); then it gets a 409. The agent ships output before the final state, and its key is never refused
(output left over by a stopped agent). On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
import requests

from localagent.server.runner import ServerThread
from tests.pg.support import pg_database, pg_url, sqlite_or_pg_url
from tests.server.helpers import Http

__all__ = ["pg_database", "pg_url", "sqlite_or_pg_url"]


@pytest.fixture
def server(sqlite_or_pg_url: str) -> Iterator[ServerThread]:
    with ServerThread(address="127.0.0.1:0", database_url=sqlite_or_pg_url, api_keys=("k",)) as running:
        yield running


def _lines(start: int, count: int) -> dict[str, object]:
    now = datetime.now(timezone.utc).isoformat()
    return {"lines": [{"seq": seq, "time": now, "text": f"line {seq}"} for seq in range(start, start + count)]}


def _append(server: ServerThread, run_id: str, bearer: str, start: int, count: int = 2) -> requests.Response:
    return requests.post(
        f"{server.url}/api/flow_runs/{run_id}/logs",
        json=_lines(start, count),
        headers={"Authorization": f"Bearer {bearer}"},
        timeout=30,
    )


@pytest.mark.parametrize("final", ["Success", "Failed", "Cancelled", "Crashed"])
def test_token_output_after_the_final_state_is_refused(server: ServerThread, final: str) -> None:
    http = Http(server, key="k")
    http.flow()
    run = http.run()
    agent = http.agent()["id"]
    token = http.claim(agent)["runs"][0]["token"]
    assert http.state(run["id"], "Running").status_code == 200
    assert _append(server, run["id"], token, 0).json() == {"stored": 2, "last_seq": 1}  # while it runs
    assert http.state(run["id"], final).status_code == 200

    late = _append(server, run["id"], token, 2)
    assert late.status_code == 409
    assert late.json()["detail"] == (
        f"run {run['id']} is {final}: its output is complete, and its run token cannot add to it"
    )
    # The agent's key still delivers what a stopped agent left over.
    assert _append(server, run["id"], "k", 2).json() == {"stored": 2, "last_seq": 3}
    page = http.ok("get", f"/api/flow_runs/{run['id']}/logs")
    assert [line["text"] for line in page["lines"]] == ["line 0", "line 1", "line 2", "line 3"]
    assert page["finished"] is True
