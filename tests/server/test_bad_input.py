"""Malformed requests get a 4xx whose detail is one string naming the field; nothing yields a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from localagent.server.runner import ServerThread
from tests.server.helpers import Http


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """One server for the whole module: these requests must not change anything anyway."""
    database = tmp_path_factory.mktemp("bad-input") / "api.db"
    with ServerThread(address="127.0.0.1:0", database_url=f"sqlite:///{database}") as server:
        yield server


@pytest.fixture(scope="module")
def ready(api_server: ServerThread) -> dict[str, str]:
    http = Http(api_server)
    http.flow()
    run = http.run()
    agent = http.agent()
    return {"run": run["id"], "agent": agent["id"]}


def _post_raw(
    server: ServerThread, path: str, body: bytes, content_type: str = "application/json"
) -> requests.Response:
    return requests.post(server.url + path, data=body, headers={"Content-Type": content_type}, timeout=10)


@pytest.mark.parametrize(
    "body", [b"{not json", b"\x00\xff\xfe garbage", b"", b"[1, 2]", b'"a string"', b"null", b"{" * 5000]
)
@pytest.mark.parametrize(
    "path", ["/api/flows", "/api/flow_runs", "/api/agents", "/api/agents/{agent}/claim", "/api/flow_runs/{run}/logs"]
)
def test_garbage_bodies(api_server: ServerThread, ready: dict[str, str], path: str, body: bytes) -> None:
    reply = _post_raw(api_server, path.format(**ready), body)
    assert 400 <= reply.status_code < 500, reply.text
    assert isinstance(reply.json()["detail"], str)
    assert reply.json()["detail"].startswith("body")


def test_garbage_with_other_content_type(api_server: ServerThread) -> None:
    reply = _post_raw(api_server, "/api/flows", b"name=x", "application/x-www-form-urlencoded")
    assert reply.status_code == 422
    assert reply.json()["detail"].startswith("body")


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/api/agents/{agent}/claim", {"slots": -1}, "body.slots: Input should be greater than or equal to 0"),
        ("/api/agents/{agent}/claim", {"slots": "many"}, "body.slots: Input should be a valid integer"),
        ("/api/agents/{agent}/claim", {"slots": 1, "wait": 1e308}, "body.wait"),
        ("/api/agents/{agent}/claim", {"slots": 1, "bogus": 1}, "body.bogus: Extra inputs are not permitted"),
        ("/api/flows", {"name": "x"}, "body.command: Field required"),
        ("/api/flows", {"name": "bad name!", "command": "a"}, "body.name"),
        ("/api/flows", {"name": "x", "command": "a", "retry_delay": "soon"}, "body.retry_delay"),
        ("/api/flows", {"name": "x", "command": "a", "retry_delay": 1e300}, "body.retry_delay: must be at most"),
        ("/api/flow_runs", {"flow": "hello", "scheduled_start": "yesterday"}, "body.scheduled_start"),
        ("/api/flow_runs", {"flow": "hello", "parameters": {"x": float("nan")}}, "value cannot be stored"),
        ("/api/flow_runs/{run}/state", {"state": "Running", "pid": 10**30}, "body.pid: integer out of range"),
        ("/api/flow_runs/{run}/state", {"state": "Bogus"}, "body.state"),
        ("/api/flow_runs/{run}/logs", {"lines": [{"seq": 10**30, "time": "2024-01-01T00:00:00Z", "text": "x"}]},
         "body.lines.0.seq: integer out of range"),
        ("/api/flow_runs/{run}/logs", {"lines": [{"seq": 0, "time": "0001-01-01T00:00:00+05:00", "text": "x"}]},
         "body.lines.0.time"),
        ("/api/agents", {"name": "a", "config_generation": 10**30}, "body.config_generation: integer out of range"),
    ],
)  # fmt: skip
def test_field_is_named(
    api_server: ServerThread, ready: dict[str, str], path: str, body: dict[str, Any], expected: str
) -> None:
    import json

    raw = json.dumps(body).encode()  # json.dumps writes NaN, which Python's parser accepts
    reply = _post_raw(api_server, path.format(**ready), raw)
    assert reply.status_code == 422, reply.text
    assert expected in reply.json()["detail"]


@pytest.mark.parametrize(
    ("path", "params", "expected"),
    [
        ("/api/flow_runs", {"limit": 0}, "query.limit"),
        ("/api/flow_runs", {"state": "Nope"}, "query.state"),
        ("/api/flow_runs", {"offset": 10**30}, "query.offset"),
        ("/api/flow_runs/{run}/logs", {"after": "x"}, "query.after"),
        ("/api/flow_runs/{run}/logs", {"wait": 1e9}, "query.wait"),
        ("/api/flows/hello", {"version": 10**30}, "query.version"),
    ],
)
def test_bad_query_parameters(
    api_server: ServerThread, ready: dict[str, str], path: str, params: dict[str, Any], expected: str
) -> None:
    reply = requests.get(api_server.url + path.format(**ready), params=params, timeout=10)
    assert reply.status_code == 422
    assert reply.json()["detail"].startswith(expected)


def test_state_is_not_corrupted_by_rejected_requests(api_server: ServerThread, ready: dict[str, str]) -> None:
    http = Http(api_server)
    before = http.ok("get", f"/api/flow_runs/{ready['run']}")
    _post_raw(api_server, f"/api/flow_runs/{ready['run']}/state", b'{"state": "Running", "pid": 1e400}')
    _post_raw(
        api_server, f"/api/flow_runs/{ready['run']}/state", b'{"state": "Running", "pid": 100000000000000000000000}'
    )
    assert http.ok("get", f"/api/flow_runs/{ready['run']}") == before


def test_unknown_path_and_method(api_server: ServerThread) -> None:
    assert requests.get(api_server.url + "/api/nope", timeout=10).json() == {"detail": "Not Found"}
    reply = requests.delete(api_server.url + "/api/flows", timeout=10)
    assert reply.status_code == 405
    assert isinstance(reply.json()["detail"], str)
