"""Hostile bodies against a live server: lone surrogates, NUL, bidi and control characters, huge strings
and numbers, deep nesting, invalid UTF-8, sent to every endpoint. No answer may be a 5xx, and afterwards the
listings and a claim still answer. On SQLite and PostgreSQL (skipped without LOCALAGENT_TEST_POSTGRES_URL).

Bounded to a few seconds in the default run; ``LOCALAGENT_FUZZ_EXAMPLES=5000`` fuzzes for longer.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localagent.server.runner import ServerThread
from tests.pg.support import pg_database, pg_url, sqlite_or_pg_url
from tests.server.helpers import Http

__all__ = ["pg_database", "pg_url", "sqlite_or_pg_url"]

EXAMPLES = int(os.environ.get("LOCALAGENT_FUZZ_EXAMPLES", "120"))

surrogate = st.integers(0xD800, 0xDFFF).map(chr)
nasty_char = st.one_of(
    surrogate, st.sampled_from(["\x00", "\x1b[2J", "\r", "\u202e", "\ufeff", "\uffff", "\U0010ffff", "\x85"])
)
short_text = st.lists(st.one_of(st.text(max_size=4), nasty_char), min_size=1, max_size=6).map("".join)
huge_text = st.sampled_from([70_000, 1_000_000]).map(lambda size: "x" * size)
hostile_text = st.one_of(short_text, short_text, short_text, huge_text)
hostile_number = st.one_of(
    st.sampled_from([2**63, -(2**63) - 1, 10**400, 1e308, -1, 0]), st.integers(), st.floats(allow_nan=False)
)


DEEP = "__deep__"
"""Stands for 3,000 nested lists, spliced into the JSON text (too deep for Python to build and copy)."""
DEEP_JSON = b"[" * 3000 + b"]" * 3000


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


hostile_value = st.one_of(
    hostile_text,
    hostile_number,
    st.dictionaries(hostile_text, hostile_text, min_size=1, max_size=2),
    st.lists(hostile_text, min_size=1, max_size=3),
    st.sampled_from([None, True, [], {}, _nested(64), DEEP]),
)

TEMPLATES: list[tuple[str, Any]] = [
    ("/api/flows", {"name": "fz", "command": ["echo", "hi"], "parameters": {"p": "v"}, "labels": ["l"],
                    "run_config": {"type": "universal", "env": {"K": "v"}, "working_dir": "/tmp", "labels": ["a"]}}),
    ("/api/flow_runs", {"flow": "hello", "parameters": {"a": [1, {"b": "c"}]}, "labels": [], "name": "n"}),
    ("/api/flow_runs/{run}/state", {"state": "Running", "message": "m", "pid": 1, "exit_code": None}),
    ("/api/flow_runs/states", {"reports": [{"run_id": "{run}", "state": "Running", "message": "m"}]}),
    ("/api/flow_runs/{run}/logs", {"lines": [{"seq": 0, "time": "2024-01-01T00:00:00Z", "text": "t"}]}),
    ("/api/flow_runs/{run}/cancel", {}),
    ("/api/agents", {"name": "a", "labels": ["x"], "hostname": "h", "version": "v", "config_error": None}),
    ("/api/agents/{agent}/heartbeat", {"running_runs": ["{run}"], "labels": [], "config_error": "e"}),
    ("/api/agents/{agent}/claim", {"slots": 2, "wait": 0, "labels": [], "run_config_types": ["universal"]}),
]  # fmt: skip
READS = ["/api/flows/{x}", "/api/flow_runs/{x}", "/api/flow_runs?flow={x}", "/api/flow_runs?agent={x}",
         "/api/flow_runs/{run}/logs?after={x}", "/api/flows?version={x}"]  # fmt: skip


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The places in a body a value can be put: each key and each list item, eight levels deep at most."""
    if len(prefix) >= 8:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*prefix, index)
            yield from _paths(item, (*prefix, index))


def _put(body: Any, path: tuple[Any, ...], value: Any, as_key: bool) -> Any:
    body = copy.deepcopy(body)
    target = body
    for part in path[:-1]:
        target = target[part]
    last = path[-1]
    if as_key and isinstance(target, dict):
        target[value if isinstance(value, str) else str(value)] = target.pop(last)
    else:
        target[last] = value
    return body


@st.composite
def hostile_request(draw: st.DrawFn) -> tuple[str, str, bytes | None]:
    """(method, path with {run} / {agent} left in, raw body)."""
    if draw(st.integers(0, 5)) == 0:
        path = draw(st.sampled_from(READS))
        text = draw(short_text)  # a huge URL is the HTTP parser's business (400, not JSON)
        return "GET", path.replace("{x}", quote(text.encode("utf-8", "surrogatepass"), safe="")), None
    path, template = draw(st.sampled_from(TEMPLATES))
    kind = draw(st.integers(0, 9))
    if kind == 0:  # not JSON text at all, or not UTF-8
        return "POST", path, draw(st.sampled_from([b"\xff\xfe\x00", b'{"a": "\xed\xa0\x80"}', b"{", b"[]", b"null"]))
    places = list(_paths(template))
    body = template
    for _ in range(draw(st.integers(1, 2))):
        if not places:
            body = {draw(hostile_text): draw(hostile_value)}
            break
        place = draw(st.sampled_from(places))
        as_key = isinstance(place[-1], str) and draw(st.booleans())
        body = _put(body, place, draw(hostile_text) if as_key else draw(hostile_value), as_key)
        places = list(_paths(body))
    raw = json.dumps(body).encode()  # ASCII: a lone surrogate goes as its \\uXXXX escape, as a client may send
    return "POST", path, raw.replace(f'"{DEEP}"'.encode(), DEEP_JSON)


@pytest.fixture
def server(sqlite_or_pg_url: str) -> Iterator[ServerThread]:
    with ServerThread(address="127.0.0.1:0", database_url=sqlite_or_pg_url) as running:
        yield running


def test_hostile_bodies_never_get_a_5xx_and_listings_still_answer(server: ServerThread) -> None:
    http = Http(server)
    http.flow()
    run = http.run()["id"]
    agent = http.agent()["id"]
    seen: dict[int, int] = {}

    @given(request=hostile_request())
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def send(request: tuple[str, str, bytes | None]) -> None:
        method, path, raw = request
        url = server.url + path.replace("{run}", run).replace("{agent}", agent)
        if raw is not None:
            raw = raw.replace(b"{run}", run.encode())
        reply = requests.request(method, url, data=raw, headers={"Content-Type": "application/json"}, timeout=60)
        seen[reply.status_code] = seen.get(reply.status_code, 0) + 1
        assert reply.status_code < 500, f"{method} {path} -> {reply.status_code}: {reply.text[:500]}"
        reply.json()  # every answer, errors included, is readable JSON

    send()
    assert any(status == 422 for status in seen), seen  # the fuzzer did reach the validation
    for path in ("/api/flow_runs?limit=1000", "/api/flows", "/api/agents"):
        reply = requests.get(server.url + path, timeout=60)
        assert reply.status_code == 200, (path, reply.text[:500])
        reply.json()
    fresh = http.agent("after-fuzz")["id"]
    claim = http.post(f"/api/agents/{fresh}/claim", json={"slots": 1000, "run_config_types": ["universal"]})
    assert claim.status_code == 200, claim.text[:500]
