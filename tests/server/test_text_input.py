"""Text the API accepts is valid: lone UTF-16 surrogates and NUL are refused (422 naming the field) or, in
relayed free text, replaced; parameters are capped; rows stored before these checks never break a listing
or a claim. On SQLite and PostgreSQL (the latter skipped without ``LOCALAGENT_TEST_POSTGRES_URL``).

Bodies are sent as raw bytes: ``\\ud800`` is a JSON escape a client may write, not something ``json.dumps``
of valid text produces.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
import requests
import sqlalchemy as sa

from localagent.api.text import PARAMETERS_MAX_BYTES
from localagent.server.runner import ServerThread
from localagent.server.tables import flow_runs, flows
from tests.pg.support import pg_database, pg_url, sqlite_or_pg_url
from tests.server.helpers import Http

__all__ = ["pg_database", "pg_url", "sqlite_or_pg_url"]

SURROGATE = "\\ud800"  # as it appears in the JSON body


@pytest.fixture
def server(sqlite_or_pg_url: str) -> Iterator[ServerThread]:
    with ServerThread(address="127.0.0.1:0", database_url=sqlite_or_pg_url) as running:
        yield running


def _raw(server: ServerThread, path: str, body: str) -> requests.Response:
    return requests.post(
        server.url + path, data=body.encode(), headers={"Content-Type": "application/json"}, timeout=30
    )


def _listings_answer(server: ServerThread) -> None:
    for path in ("/api/flow_runs", "/api/flows", "/api/agents"):
        reply = requests.get(server.url + path, timeout=30)
        assert reply.status_code == 200, (path, reply.text)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/flow_runs", '{"flow":"f","parameters":{"a":"%s"}}', "body.parameters: 'a' contains a lone UTF-16"),
        ("/api/flow_runs", '{"flow":"f","parameters":{"a":[1,{"%s":2}]}}', "body.parameters: key"),
        ("/api/flow_runs", '{"flow":"f","labels":["%s"]}', "body.labels.0: contains a lone UTF-16"),
        ("/api/flow_runs", '{"flow":"f","name":"%s"}', "body.name: contains a lone UTF-16"),
        ("/api/flows", '{"name":"g","command":"x","run_config":{"env":{"K":"%s"}}}', "body.run_config.env.K:"),
        ("/api/flows", '{"name":"g","command":"x","run_config":{"env":{"%s":"v"}}}', "body.run_config.env."),
        ("/api/flows", '{"name":"g","command":["x","%s"]}', "body.command: argument 1 contains a lone UTF-16"),
        ("/api/flows", '{"name":"g","command":"x","labels":["%s"]}', "body.labels.0: contains a lone"),
        ("/api/flows", '{"name":"g","command":"x","parameters":{"p":"%s"}}', "body.parameters: 'p' contains"),
        ("/api/flows", '{"name":"g","command":"x","run_config":{"working_dir":"%s"}}', "body.run_config.working_dir"),
        ("/api/agents", '{"name":"%s"}', "body.name: contains a lone UTF-16"),
        ("/api/agents", '{"name":"a","labels":["%s"]}', "body.labels.0: contains a lone UTF-16"),
        ("/api/agents", '{"name":"a","hostname":"%s"}', "body.hostname: contains a lone UTF-16"),
    ],
)
def test_a_lone_surrogate_is_refused_naming_the_field(server: ServerThread, path: str, body: str, field: str) -> None:
    Http(server).flow("f")
    reply = _raw(server, path, body % SURROGATE)
    assert reply.status_code == 422, reply.text
    assert reply.json()["detail"].startswith(field), reply.json()["detail"]
    _listings_answer(server)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ('{"name":"g","command":["x","a\\u0000b"]}', "body.command: argument 1 contains a NUL character"),
        ('{"name":"g","command":"echo \\u0000"}', "body.command: contains a NUL character"),
        ('{"name":"g","command":"x","run_config":{"env":{"K\\u0000":"v"}}}', "body.run_config.env."),
        ('{"name":"g","command":"x","run_config":{"env":{"K":"v\\u0000"}}}', "body.run_config.env.K: contains a NUL"),
        ('{"name":"g","command":"x","run_config":{"env":{"A=B":"v"}}}', "body.run_config.env.A=B.[key]: environment"),
        ('{"name":"g","command":"x","run_config":{"env":{"":"v"}}}', "body.run_config.env..[key]: environment"),
    ],
)
def test_nul_in_a_command_or_env_is_refused(server: ServerThread, body: str, detail: str) -> None:
    reply = _raw(server, "/api/flows", body)
    assert reply.status_code == 422, reply.text
    assert reply.json()["detail"].startswith(detail), reply.json()["detail"]
    assert requests.get(server.url + "/api/flows", timeout=30).json() == []


def test_relayed_text_gets_a_replacement_character(server: ServerThread) -> None:
    http = Http(server)
    http.flow("f")
    run = http.run("f")
    agent = http.agent()["id"]
    http.claim(agent)
    reply = _raw(server, f"/api/flow_runs/{run['id']}/state", '{"state":"Running","message":"bad ' + SURROGATE + '"}')
    assert reply.status_code == 200, reply.text
    assert reply.json()["state_message"] == "bad \ufffd"
    beat = _raw(server, f"/api/agents/{agent}/heartbeat", '{"config_error":"file ' + SURROGATE + '"}')
    assert beat.status_code == 200, beat.text
    assert http.ok("get", "/api/agents")[0]["config_error"] == "file \ufffd"
    _listings_answer(server)


def test_parameters_are_capped_alone_and_merged(server: ServerThread) -> None:
    http = Http(server)
    too_big = {"blob": "x" * PARAMETERS_MAX_BYTES}
    reply = http.post("/api/flows", json={"name": "f", "command": "x", "parameters": too_big})
    assert reply.status_code == 422
    assert reply.json()["detail"].startswith(f"body.parameters: take {PARAMETERS_MAX_BYTES + 11} bytes as JSON")
    half = "y" * (PARAMETERS_MAX_BYTES // 2)
    http.flow("f", parameters={"a": half})
    assert http.post("/api/flow_runs", json={"flow": "f", "parameters": too_big}).status_code == 422
    merged = http.post("/api/flow_runs", json={"flow": "f", "parameters": {"b": half}})
    assert merged.status_code == 422
    assert "merged over the flow's defaults they take" in merged.json()["detail"]
    assert merged.json()["detail"].startswith("body.parameters: ")
    fits = http.post("/api/flow_runs", json={"flow": "f", "parameters": {"a": "override"}})
    assert fits.status_code == 201
    assert [run["parameters"] for run in http.ok("get", "/api/flow_runs")] == [{"a": "override"}]


def test_rows_stored_before_the_checks_never_break_listings_or_claims(server: ServerThread) -> None:
    """What a server before these checks stored (a surrogate in parameters and in a flow's env, a NUL in a
    flow's command): listed with U+FFFD, and claimed together with innocent runs, which all reach the agent."""
    http = Http(server)
    http.flow("good")
    innocent = [http.run("good")["id"] for _ in range(3)]
    poisoned_spec = {"name": "bad", "command": "echo \x00", "run_config": {"env": {"K": "\ud800"}}}
    now = datetime.now(timezone.utc)
    database = server.app.state.services.database
    with database.begin() as conn:
        conn.execute(sa.insert(flows).values(name="bad", version=1, spec=json.dumps(poisoned_spec), created=now))
        template = dict(conn.execute(sa.select(flow_runs).where(flow_runs.c.id == innocent[0])).one()._mapping)
        conn.execute(
            sa.insert(flow_runs).values(
                {**template, "id": "b" * 32, "flow": "bad", "flow_version": 1, "parameters": '{"a":"\\ud800"}'}
            )
        )
    runs = {run["id"]: run for run in http.ok("get", "/api/flow_runs")}
    assert runs["b" * 32]["parameters"] == {"a": "\ufffd"}
    assert http.ok("get", "/api/flows/bad")["run_config"]["env"] == {"K": "\ufffd"}
    assert http.ok("get", "/api/flows/bad")["command"] == "echo \ufffd"
    agent = http.agent()["id"]
    claimed = http.claim(agent, slots=10)["runs"]
    assert sorted(claim["run"]["id"] for claim in claimed) == sorted([*innocent, "b" * 32])
    assert {claim["run"]["state"] for claim in claimed} == {"Submitted"}
    _listings_answer(server)
