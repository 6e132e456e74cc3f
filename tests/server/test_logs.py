"""Logs: a resent seq is stored once; reads are ordered after a cursor; follow long-polls until the end."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Any

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
