"""Logs: a resent seq is stored once; reads are ordered after a cursor; follow long-polls until the end."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any

import pytest

from localagent.api.models import LogBatch
from localagent.server.log_wire import MAX_LINES
from localagent.server.runner import ServerThread
from tests.server.helpers import Http


def _lines(seqs: range, prefix: str = "line") -> list[dict[str, Any]]:
    now = datetime.now(timezone.utc).isoformat()
    return [{"seq": s, "time": now, "stream": "stdout", "text": f"{prefix} {s}"} for s in seqs]


def _started_run(http: Http) -> str:
    http.flow()
    run = http.run()
    http.claim(http.agent()["id"])
    http.state(run["id"], "Running")
    return str(run["id"])


def test_resent_lines_are_stored_once(api_server: ServerThread) -> None:
    http = Http(api_server)
    run = _started_run(http)
    path = f"/api/flow_runs/{run}/logs"
    assert http.ok("post", path, json={"lines": _lines(range(0, 5))}) == {"stored": 5, "last_seq": 4}
    assert http.ok("post", path, json={"lines": _lines(range(3, 8), "resent")}) == {"stored": 3, "last_seq": 7}
    assert http.ok("post", path, json={"lines": []}) == {"stored": 0, "last_seq": 7}
    page = http.ok("get", path)
    assert [line["text"] for line in page["lines"]] == [f"line {i}" for i in range(5)] + [
        f"resent {i}" for i in range(5, 8)
    ]
    assert page["next_after"] == 7
    assert page["finished"] is False


def test_paging_after_a_cursor(api_server: ServerThread) -> None:
    http = Http(api_server)
    run = _started_run(http)
    path = f"/api/flow_runs/{run}/logs"
    http.ok("post", path, json={"lines": _lines(range(10))[::-1]})  # order of arrival does not matter
    first = http.ok("get", path, params={"after": -1, "limit": 4})
    assert [line["seq"] for line in first["lines"]] == [0, 1, 2, 3]
    second = http.ok("get", path, params={"after": first["next_after"], "limit": 100})
    assert [line["seq"] for line in second["lines"]] == list(range(4, 10))
    http.state(run, "Success")
    end = http.ok("get", path, params={"after": second["next_after"]})
    assert end == {"lines": [], "next_after": 9, "finished": True}
    assert http.ok("get", path, params={"after": 3, "limit": 2})["finished"] is False


def test_follow_wakes_on_new_lines_and_on_the_end(api_server: ServerThread) -> None:
    http = Http(api_server)
    run = _started_run(http)
    path = f"/api/flow_runs/{run}/logs"
    pages: list[dict[str, Any]] = []

    def follow() -> None:
        after = -1
        follower = Http(api_server)
        while True:
            page = follower.ok("get", path, params={"after": after, "wait": 20})
            pages.append(page)
            after = page["next_after"]
            if page["finished"]:
                return

    thread = threading.Thread(target=follow)
    thread.start()
    http.ok("post", path, json={"lines": _lines(range(0, 2))})
    http.ok("post", path, json={"lines": _lines(range(2, 3))})
    http.state(run, "Success")
    thread.join(30)
    assert not thread.is_alive()
    seen = [line["seq"] for page in pages for line in page["lines"]]
    assert seen == [0, 1, 2]
    assert pages[-1]["finished"] is True


def test_logs_of_unknown_run_are_404(api_server: ServerThread) -> None:
    http = Http(api_server)
    assert http.get("/api/flow_runs/nope/logs").status_code == 404
    assert http.post("/api/flow_runs/nope/logs", json={"lines": _lines(range(1))}).status_code == 404


def test_a_large_batch_with_resent_lines_counts_exactly(api_server: ServerThread) -> None:
    http = Http(api_server)
    run = _started_run(http)
    path = f"/api/flow_runs/{run}/logs"
    assert http.ok("post", path, json={"lines": _lines(range(1000, 1500))})["stored"] == 500
    # 2,500 lines (more than one insert statement's worth), 500 of them already stored, one repeated.
    batch = _lines(range(0, 2500), "big") + _lines(range(10, 11), "repeat")
    assert http.ok("post", path, json={"lines": batch}) == {"stored": 2000, "last_seq": 2499}
    page = http.ok("get", path, params={"limit": 10_000})
    assert [line["seq"] for line in page["lines"]] == list(range(2500))
    texts = {line["seq"]: line["text"] for line in page["lines"]}
    assert (texts[10], texts[1000], texts[2499]) == ("big 10", "line 1000", "big 2499")


def test_times_are_stored_in_utc_and_streams_default_to_stdout(api_server: ServerThread) -> None:
    http = Http(api_server)
    run = _started_run(http)
    path = f"/api/flow_runs/{run}/logs"
    lines = [
        {"seq": 0, "time": "2024-05-01T12:00:00", "text": "naive means UTC"},
        {"seq": 1, "time": "2024-05-01T14:00:00.250000+02:00", "stream": "stderr", "text": "offset"},
        {"seq": 2, "time": "2024-05-01T12:00:01Z", "stream": "system", "text": "zulu"},
        {"seq": 3, "time": 1714564802, "text": "epoch seconds, as pydantic reads them"},
    ]
    assert http.ok("post", path, json={"lines": lines})["stored"] == 4
    page = http.ok("get", path)
    assert [(line["time"], line["stream"]) for line in page["lines"]] == [
        ("2024-05-01T12:00:00Z", "stdout"),
        ("2024-05-01T12:00:00.250000Z", "stderr"),
        ("2024-05-01T12:00:01Z", "system"),
        ("2024-05-01T12:00:02Z", "stdout"),
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ({"seq": 0, "time": "noon", "text": "x"}, "body.lines.1.time"),
        ({"seq": -1, "time": "2024-01-01T00:00:00Z", "text": "x"}, "body.lines.1.seq"),
        ({"seq": 0, "time": "2024-01-01T00:00:00Z", "text": 5}, "body.lines.1.text"),
        ({"seq": 0, "time": "2024-01-01T00:00:00Z", "text": "x", "stream": "tty"}, "body.lines.1.stream"),
        ({"seq": 0, "time": "2024-01-01T00:00:00Z", "text": "x", "level": 3}, "body.lines.1.level"),
        ({"seq": 0, "text": "x"}, "body.lines.1.time: Field required"),
        ({"seq": 0, "time": "9999-12-31T23:00:00-05:00", "text": "x"}, "body.lines.1.time: time must be"),
    ],
)
def test_a_bad_line_is_refused_by_name_and_nothing_is_stored(
    api_server: ServerThread, line: dict[str, Any], expected: str
) -> None:
    http = Http(api_server)
    run = _started_run(http)
    path = f"/api/flow_runs/{run}/logs"
    reply = http.post(path, json={"lines": [*_lines(range(0, 1)), line]})
    assert reply.status_code == 422, reply.text
    assert reply.json()["detail"].startswith(expected)
    assert http.ok("get", path)["lines"] == []


def test_a_batch_body_must_be_json(api_server: ServerThread) -> None:
    http = Http(api_server)
    run = _started_run(http)
    path = f"/api/flow_runs/{run}/logs"
    reply = http.post(path, data=b'{"lines": []}', headers={"Content-Type": "text/plain"})
    assert reply.status_code == 422
    assert reply.json()["detail"].startswith("body: expected a JSON object")
    assert http.post(path, data=b'{"lines": []}', headers={"Content-Type": "application/json; charset=utf-8"}).ok


def test_the_fast_batch_shape_keeps_the_documented_limit() -> None:
    assert LogBatch.model_json_schema()["properties"]["lines"]["maxItems"] == MAX_LINES
