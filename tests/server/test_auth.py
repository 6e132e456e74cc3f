"""Auth: with a key every endpoint but health and the OpenAPI document needs it; run tokens are scoped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from localagent.server.runner import ServerThread
from tests.server.helpers import Http


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    database = tmp_path_factory.mktemp("auth") / "api.db"
    with ServerThread(address="127.0.0.1:0", database_url=f"sqlite:///{database}", api_keys=("k1", "k2")) as server:
        yield server


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/flows"),
        ("post", "/api/flows"),
        ("get", "/api/flows/x"),
        ("get", "/api/flow_runs"),
        ("post", "/api/flow_runs"),
        ("get", "/api/flow_runs/x"),
        ("post", "/api/flow_runs/x/cancel"),
        ("post", "/api/flow_runs/x/state"),
        ("post", "/api/flow_runs/states"),
        ("get", "/api/flow_runs/x/logs"),
        ("post", "/api/flow_runs/x/logs"),
        ("get", "/api/agents"),
        ("post", "/api/agents"),
        ("post", "/api/agents/x/heartbeat"),
        ("post", "/api/agents/x/claim"),
    ],
)
def test_every_endpoint_needs_a_key(keyed: ServerThread, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic azE="}):
        reply = requests.request(method, keyed.url + path, json={}, headers=headers, timeout=10)
        assert reply.status_code == 401, (path, headers, reply.text)
        assert isinstance(reply.json()["detail"], str)
        assert reply.headers["WWW-Authenticate"] == "Bearer"


def test_health_and_openapi_need_no_key(keyed: ServerThread) -> None:
    assert requests.get(keyed.url + "/api/health", timeout=10).status_code == 200
    assert requests.get(keyed.url + "/openapi.json", timeout=10).status_code == 200


def test_any_configured_key_works(keyed: ServerThread) -> None:
    assert Http(keyed, key="k1").get("/api/flows").status_code == 200
    assert Http(keyed, key="k2").get("/api/flows").status_code == 200


def test_run_token_scope(keyed: ServerThread) -> None:
    http = Http(keyed, key="k1")
    http.flow()
    mine = http.run()
    other = http.run()
    agent = http.agent()["id"]
    token = http.claim(agent)["runs"][0]["token"]
    run = Http(keyed, key=token)
    # its own run: read, report state, ship and read logs
    assert run.ok("get", f"/api/flow_runs/{mine['id']}")["state"] == "Submitted"
    assert run.state(mine["id"], "Running").status_code == 200
    line = {"seq": 0, "time": "2024-01-01T00:00:00Z", "text": "hi"}
    assert run.ok("post", f"/api/flow_runs/{mine['id']}/logs", json={"lines": [line]})["stored"] == 1
    assert run.ok("get", f"/api/flow_runs/{mine['id']}/logs")["lines"][0]["text"] == "hi"
    # anything else: 403
    forbidden = [
        run.get(f"/api/flow_runs/{other['id']}"),
        run.state(other["id"], "Cancelled"),
        run.post(f"/api/flow_runs/{other['id']}/logs", json={"lines": [line]}),
        run.get(f"/api/flow_runs/{other['id']}/logs"),
        run.get("/api/flow_runs"),
        run.post(f"/api/flow_runs/{mine['id']}/cancel"),
        run.get("/api/flows"),
        run.post("/api/flow_runs", json={"flow": "hello"}),
        run.get("/api/agents"),
        run.post(f"/api/agents/{agent}/heartbeat", json={}),
    ]
    assert [reply.status_code for reply in forbidden] == [403] * len(forbidden)
    assert run.state(mine["id"], "Success").json()["state"] == "Success"


def test_retry_invalidates_the_old_token(keyed: ServerThread) -> None:
    http = Http(keyed, key="k1")
    http.flow("retried", retries=1, labels=["retry-test"])
    run = http.run("retried")
    agent = http.agent()["id"]
    token = http.claim(agent, labels=["retry-test"])["runs"][0]["token"]
    http.state(run["id"], "Crashed")
    assert Http(keyed, key=token).get(f"/api/flow_runs/{run['id']}").status_code == 401
