"""Flows: register makes a new version only when the spec changed; list shows the latest; show any version."""

from __future__ import annotations

from localagent.server.runner import ServerThread
from tests.server.helpers import Http


def test_upsert_versions(api_server: ServerThread) -> None:
    http = Http(api_server)
    first = http.flow("etl", retries=1, retry_delay="1m")
    assert first["version"] == 1
    assert first["retry_delay"] == 60.0
    assert http.flow("etl", retries=1, retry_delay=60)["version"] == 1  # same spec, other spelling
    assert http.flow("etl", retries=2)["version"] == 2
    http.flow("other")
    listed = http.ok("get", "/api/flows")
    assert [(f["name"], f["version"]) for f in listed] == [("etl", 2), ("other", 1)]
    assert http.ok("get", "/api/flows/etl")["retries"] == 2
    assert http.ok("get", "/api/flows/etl", params={"version": 1})["retries"] == 1


def test_unknown_flow_and_version(api_server: ServerThread) -> None:
    http = Http(api_server)
    missing = http.get("/api/flows/nope")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "flow 'nope' not found"}
    http.flow("etl")
    assert http.get("/api/flows/etl", params={"version": 7}).json()["detail"] == "flow 'etl' has no version 7"
