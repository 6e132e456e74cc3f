"""ApiClient against a scripted real HTTP server: retries, error translation, timeouts, request shape."""

from __future__ import annotations

import socket
from datetime import datetime, timezone
from typing import Any

import pytest

from localagent.api.client import ApiClient
from localagent.api.models import (
    ClaimRequest,
    FlowRunCreate,
    FlowSpec,
    Heartbeat,
    LogLine,
    StateName,
    StateUpdate,
)
from localagent.errors import (
    ApiConflict,
    ApiNotFound,
    ApiRejected,
    ApiUnauthorized,
    ApiUnavailable,
)
from tests.api.scripted_server import Answer, scripted_server

HEALTH = {"status": "ok", "version": "1.0", "database": "sqlite"}
NOW = "2024-05-01T12:00:00Z"


def run_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "r1",
        "name": "brave-otter",
        "flow": "hello",
        "flow_version": 1,
        "parameters": {},
        "labels": [],
        "run_config_type": "universal",
        "scheduled_start": NOW,
        "state": "Scheduled",
        "created": NOW,
        "updated": NOW,
    }
    body.update(overrides)
    return body


def client(url: str, **kwargs: Any) -> ApiClient:
    kwargs.setdefault("backoff", 0.01)
    kwargs.setdefault("timeout", 5.0)
    return ApiClient(url, **kwargs)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_health_sends_key_and_parses_the_reply() -> None:
    with scripted_server(Answer(body=HEALTH)) as (url, script), client(url + "/", key="s3cret") as api:
        assert api.url == url
        health = api.health()
    assert health.database == "sqlite"
    assert script.seen[0].path == "/api/health"
    assert script.seen[0].headers["Authorization"] == "Bearer s3cret"


def test_no_key_sends_no_authorization_header() -> None:
    with scripted_server(Answer(body=HEALTH)) as (url, script), client(url) as api:
        api.health()
    assert "Authorization" not in script.seen[0].headers


def test_request_bodies_and_query_use_the_wire_models() -> None:
    answers = [Answer(body=run_body()), Answer(body=[run_body()])]
    with scripted_server(*answers) as (url, script), client(url) as api:
        api.create_run(FlowRunCreate(flow="hello", parameters={"n": 3}, labels=["etl"]))
        runs = api.list_runs(flow="hello", state=StateName.RUNNING, limit=5)
    assert runs[0].name == "brave-otter"
    posted = script.seen[0]
    assert (posted.method, posted.path) == ("POST", "/api/flow_runs")
    assert posted.body["flow"] == "hello"
    assert posted.body["parameters"] == {"n": 3}
    assert posted.body["labels"] == ["etl"]
    assert script.seen[1].path == "/api/flow_runs?limit=5&offset=0&flow=hello&state=Running"


def test_path_segments_are_quoted() -> None:
    with (
        scripted_server(Answer(404, {"detail": "flow 'a b/c' not found"})) as (url, script),
        client(url) as api,
        pytest.raises(ApiNotFound),
    ):
        api.get_flow("a b/c", version=2)
    assert script.seen[0].path == "/api/flows/a%20b%2Fc?version=2"


def test_idempotent_get_is_retried_after_5xx() -> None:
    answers = [Answer(503, {"detail": "busy"}), Answer(502, raw=b"<html>bad gateway</html>"), Answer(body=HEALTH)]
    with scripted_server(*answers) as (url, script), client(url) as api:
        assert api.health().status == "ok"
    assert len(script.seen) == 3


def test_persistent_5xx_ends_in_api_rejected_with_the_detail() -> None:
    with (
        scripted_server(Answer(503, {"detail": "database is locked"})) as (url, script),
        client(url, retries=2) as api,
        pytest.raises(ApiRejected) as caught,
    ):
        api.list_flows()
    assert caught.value.status_code == 503
    assert str(caught.value) == "database is locked"
    assert len(script.seen) == 3


@pytest.mark.parametrize(
    "call",
    [
        lambda api: api.create_run(FlowRunCreate(flow="x")),
        lambda api: api.register_flow(FlowSpec(name="x", command="true")),
        lambda api: api.cancel_run("r1"),
        lambda api: api.claim("a1", ClaimRequest(slots=1)),
    ],
    ids=["create_run", "register_flow", "cancel_run", "claim"],
)
def test_non_idempotent_calls_are_sent_once(call: Any) -> None:
    with (
        scripted_server(Answer(500, {"detail": "boom"})) as (url, script),
        client(url) as api,
        pytest.raises(ApiRejected, match="boom"),
    ):
        call(api)
    assert len(script.seen) == 1


@pytest.mark.parametrize(
    ("call", "reply"),
    [
        (
            lambda api: api.append_logs("r1", [LogLine(seq=0, time=datetime.now(timezone.utc), text="hi")]),
            {"stored": 1, "last_seq": 0},
        ),
        (lambda api: api.set_state("r1", StateUpdate(state=StateName.RUNNING, pid=42)), run_body(state="Running")),
        (lambda api: api.heartbeat("a1", Heartbeat(running_runs=["r1"])), {"cancel": []}),
    ],
    ids=["append_logs", "set_state", "heartbeat"],
)
def test_idempotent_posts_are_resent_after_a_hang_up(call: Any, reply: dict[str, Any]) -> None:
    with scripted_server(Answer(hang_up=True), Answer(body=reply)) as (url, script), client(url) as api:
        call(api)
    assert len(script.seen) == 2
    assert script.seen[0].body == script.seen[1].body


def test_hang_up_on_a_post_that_is_not_idempotent_is_unavailable() -> None:
    with (
        scripted_server(Answer(hang_up=True)) as (url, script),
        client(url) as api,
        pytest.raises(ApiUnavailable, match="cannot reach the API"),
    ):
        api.create_run(FlowRunCreate(flow="x"))
    assert len(script.seen) == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [(404, ApiNotFound), (401, ApiUnauthorized), (403, ApiUnauthorized), (409, ApiConflict), (400, ApiRejected)],
)
def test_status_codes_map_to_the_error_tree(status: int, error: type[ApiRejected]) -> None:
    with (
        scripted_server(Answer(status, {"detail": "flow 'x' not found"})) as (url, script),
        client(url) as api,
        pytest.raises(error) as caught,
    ):
        api.get_flow("x")
    assert type(caught.value) is error
    assert caught.value.status_code == status
    assert str(caught.value) == "flow 'x' not found"
    assert len(script.seen) == 1


def test_fastapi_style_list_detail_is_made_readable() -> None:
    detail = [{"loc": ["body", "slots"], "msg": "Input should be greater than or equal to 0", "type": "x"}]
    with (
        scripted_server(Answer(422, {"detail": detail})) as (url, _),
        client(url) as api,
        pytest.raises(ApiRejected) as caught,
    ):
        api.claim("a1", ClaimRequest(slots=1))
    assert str(caught.value) == "slots: Input should be greater than or equal to 0"
    assert caught.value.status_code == 422


def test_error_without_json_body_still_says_something() -> None:
    with (
        scripted_server(Answer(418, raw=b"")) as (url, _),
        client(url) as api,
        pytest.raises(ApiRejected, match="GET /api/agents with HTTP 418"),
    ):
        api.list_agents()


def test_garbage_body_is_rejected_not_a_crash() -> None:
    with (
        scripted_server(Answer(raw=b"<html>surprise</html>")) as (url, _),
        client(url) as api,
        pytest.raises(ApiRejected, match="not JSON: <html>surprise</html>"),
    ):
        api.list_flows()


def test_body_of_the_wrong_shape_is_rejected_naming_the_field() -> None:
    with (
        scripted_server(Answer(body=run_body(state="Sleeping"))) as (url, _),
        client(url) as api,
        pytest.raises(ApiRejected, match=r"unexpected body \(state: "),
    ):
        api.get_run("r1")


def test_reply_fields_this_version_does_not_know_are_ignored() -> None:
    """A newer server may add fields to its replies; this client reads on (requests are still strict)."""
    record = {"state": "Scheduled", "time": NOW, "message": "created", "new": True}
    body = run_body(added_later={"anything": 1}, history=[record])
    with scripted_server(Answer(body=body)) as (url, _), client(url) as api:
        run = api.get_run("r1")
    assert run.id == "r1"
    assert run.history[0].message == "created"
    assert "added_later" not in run.model_dump()


def test_connection_refused_is_unavailable_with_a_hint() -> None:
    url = closed_port_url()
    with client(url, retries=1) as api, pytest.raises(ApiUnavailable) as caught:
        api.health()
    message = str(caught.value)
    assert message.startswith(f"cannot reach the API at {url}: connection refused")
    assert "tried 2 times" in message
    assert "`localagent server`" in message


def test_unresolvable_host_is_unavailable() -> None:
    with client("http://no-such-host.invalid:4300", retries=0) as api, pytest.raises(ApiUnavailable) as caught:
        api.health()
    assert "host name not resolved" in str(caught.value)


def test_slow_answer_times_out_as_unavailable() -> None:
    with (
        scripted_server(Answer(body=HEALTH, delay=1.5)) as (url, _),
        client(url, timeout=0.2, retries=0) as api,
        pytest.raises(ApiUnavailable, match=r"did not answer GET /api/health within 0\.2s"),
    ):
        api.health()


def test_long_poll_gets_wait_plus_timeout() -> None:
    reply = {"runs": [], "cancel": ["r9"]}
    with scripted_server(Answer(body=reply, delay=0.5)) as (url, script), client(url, timeout=0.3) as api:
        answer = api.claim("agent-1", ClaimRequest(slots=2, wait=1.5, labels=["etl"]))
        page_reply = {"lines": [], "next_after": 4, "finished": False}
        script.answers[:] = [Answer(body=page_reply, delay=0.5)]
        page = api.read_logs("r1", after=4, wait=1.5)
    assert answer.cancel == ["r9"]
    assert script.seen[0].body["labels"] == ["etl"]
    assert page.next_after == 4
    assert script.seen[1].path == "/api/flow_runs/r1/logs?after=4&limit=1000&wait=1.5"


def test_bad_url_is_refused_up_front() -> None:
    with pytest.raises(ApiUnavailable, match="must start with http"):
        ApiClient("127.0.0.1:4300")
