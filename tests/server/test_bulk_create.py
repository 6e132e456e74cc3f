"""``POST /api/flow_runs/bulk``: many runs in one transaction, checked like one; a bad item refuses them all."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from localagent.api.client import ApiClient
from localagent.api.models import FlowRunCreate, FlowSpec, StateName
from localagent.errors import ApiRejected
from localagent.server.runner import ServerThread
from tests.pg.support import pg_database, pg_url, sqlite_or_pg_url

__all__ = ["pg_database", "pg_url", "sqlite_or_pg_url"]


@pytest.fixture
def api(sqlite_or_pg_url: str) -> Iterator[ApiClient]:
    with (
        ServerThread(address="127.0.0.1:0", database_url=sqlite_or_pg_url) as server,
        ApiClient(server.url, retries=0) as client,
    ):
        client.register_flow(FlowSpec(name="resize", command=["true"], parameters={"size": 10}, labels=["img"]))
        yield client


def test_runs_are_created_in_order_as_single_creation_would(api: ApiClient) -> None:
    requests_ = [FlowRunCreate(flow="resize", parameters={"i": i}) for i in range(250)]
    requests_.append(FlowRunCreate(flow="resize", labels=["gpu"], name="the-last", parameters={"size": 3}))
    created = api.create_runs(requests_).runs
    assert len(created) == 251
    assert created[-1].name == "the-last"
    assert {run.flow for run in created} == {"resize"} and {run.flow_version for run in created} == {1}
    first = api.get_run(created[0].id)
    assert first.state is StateName.SCHEDULED
    assert first.parameters == {"size": 10, "i": 0}
    assert first.labels == ["img"]
    assert [record.message for record in first.history] == ["created"]
    last = api.get_run(created[-1].id)
    assert (last.parameters, last.labels, last.name) == ({"size": 3}, ["img", "gpu"], "the-last")
    assert len(api.list_runs(flow="resize", limit=1000)) == 251


def test_a_bad_item_refuses_the_whole_request_naming_its_index(api: ApiClient) -> None:
    good = [FlowRunCreate(flow="resize") for _ in range(5)]
    with pytest.raises(ApiRejected) as unknown:
        api.create_runs([*good, FlowRunCreate(flow="nope"), *good])
    assert unknown.value.status_code == 422
    assert unknown.value.detail == "body.runs.5.flow: flow 'nope' not found"
    with pytest.raises(ApiRejected) as version:
        api.create_runs([*good, FlowRunCreate(flow="resize", version=7)])
    assert version.value.detail == "body.runs.5.flow: flow 'resize' has no version 7"
    api.register_flow(FlowSpec(name="big", command=["true"], parameters={"a": "x" * 40_000}))
    half = {"b": "y" * 30_000}  # fine alone, too big merged over the flow's defaults
    with pytest.raises(ApiRejected) as too_big:
        api.create_runs([FlowRunCreate(flow="resize", parameters=half), FlowRunCreate(flow="big", parameters=half)])
    assert too_big.value.status_code == 422
    assert too_big.value.detail.startswith("body.runs.1.parameters")
    assert api.list_runs() == []  # nothing of any refused request was kept


def test_bad_bodies_are_422_naming_the_field(api: ApiClient) -> None:
    def post(body: Any) -> requests.Response:
        return requests.post(f"{api.url}/api/flow_runs/bulk", json=body, timeout=30)

    empty = post({"runs": []})
    assert empty.status_code == 422 and empty.json()["detail"].startswith("body.runs")
    wrong = post({"runs": [{"flow": "resize"}, {"flow": 3}]})
    assert wrong.status_code == 422 and wrong.json()["detail"].startswith("body.runs.1.flow")
    far = post({"runs": [{"flow": "resize", "scheduled_start": "0001-01-01T00:00:00+14:00"}]})
    assert far.status_code == 422 and far.json()["detail"].startswith("body.runs.0.scheduled_start")
    many = post({"runs": [{"flow": "resize"}] * 10_001})
    assert many.status_code == 422 and "10000" in many.json()["detail"].replace(",", "")
    assert api.list_runs(flow="resize") == []
