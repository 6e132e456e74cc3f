"""The OpenAPI document: exported copy in sync with the live one, and the live app conforms to it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

from localagent.server.runner import ServerThread

EXPORTED = Path(__file__).resolve().parents[2] / "schemas" / "openapi.json"


def test_exported_document_matches_the_live_one(api_server: ServerThread) -> None:
    live = requests.get(api_server.url + "/openapi.json", timeout=10).json()
    exported = json.loads(EXPORTED.read_text(encoding="utf-8"))
    assert exported == live, (
        "schemas/openapi.json is stale: run `localagent server --export-openapi schemas/openapi.json`"
    )


def test_every_documented_path_is_under_api() -> None:
    paths = json.loads(EXPORTED.read_text(encoding="utf-8"))["paths"]
    assert paths
    assert all(path.startswith("/api/") for path in paths)


@pytest.fixture(scope="module")
def live_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    database = tmp_path_factory.mktemp("schemathesis") / "api.db"
    with ServerThread(address="127.0.0.1:0", database_url=f"sqlite:///{database}") as server:
        # a flow, a run and an agent so that some generated requests reach past the 404s
        requests.post(server.url + "/api/flows", json={"name": "hello", "command": "echo hi"}, timeout=10)
        yield schemathesis.openapi.from_url(server.url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("live_schema")


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: Any) -> None:
    # long-polls would only slow the run down; their waiting is tested elsewhere
    if case.query and "wait" in case.query:
        case.query["wait"] = 0
    if isinstance(case.body, dict) and "wait" in case.body:
        case.body["wait"] = 0
    # Left out on purpose: positive_data_acceptance, because the server is stricter than the document
    # where the contract models cannot say so (a non-empty command, 64-bit integers, delays up to 10
    # years); negative_data_rejection, because the wire models validate in pydantic's lax mode (``false``
    # is accepted for 0, "5" for 5). Everything else runs: no 5xx, documented status codes, documented
    # content types and headers, and every response body matching its schema.
    case.call_and_validate(excluded_checks=[positive_data_acceptance, negative_data_rejection])
