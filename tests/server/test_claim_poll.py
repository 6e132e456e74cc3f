"""The claim long-poll: no re-check on a timer, wakes when a scheduled run comes due, ends on a relabelling
heartbeat, and hands out nothing to a client that went away."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from localagent.server.claims import ClaimService
from localagent.server.runner import ServerThread
from tests.server.helpers import Http
from tests.support.wait import wait_for


class CountedClaims:
    """Counts the server's one-shot claims (each one is a claim query)."""

    def __init__(self, server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        claims: ClaimService = server.app.state.services.claims
        claim_now = claims.claim_now

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return claim_now(*args, **kwargs)

        monkeypatch.setattr(claims, "claim_now", counted)


def _waiting(server: ServerThread, agent: str) -> Callable[[], bool]:
    """True while a claim of ``agent`` is subscribed to its wake-ups (it is in its long-poll)."""
    subscribers = server.app.state.services.notifier._subscribers
    return lambda: bool(subscribers.get(f"agent:{agent}"))


def _claim_in_background(http: Http, agent: str, **body: object) -> tuple[threading.Thread, list[dict[str, Any]]]:
    result: list[dict[str, Any]] = []
    thread = threading.Thread(target=lambda: result.append(http.ok("post", f"/api/agents/{agent}/claim", json=body)))
    thread.start()
    return thread, result


def test_an_idle_long_poll_queries_once_at_each_end(api_server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> None:
    http = Http(api_server)
    http.flow()
    agent = http.agent()["id"]
    counted = CountedClaims(api_server, monkeypatch)
    assert http.claim(agent, slots=4, wait=2.5) == {"runs": [], "cancel": []}
    # One claim on arrival and one when the wait is over: nothing in between re-ran the query.
    assert counted.calls == 2


def test_a_run_scheduled_for_later_is_claimed_when_it_comes_due(
    api_server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    http = Http(api_server)
    http.flow()
    agent = http.agent()["id"]
    start = datetime.now(timezone.utc) + timedelta(seconds=2.5)
    run = http.run(scheduled_start=start.isoformat())
    counted = CountedClaims(api_server, monkeypatch)
    reply = http.claim(agent, slots=1, wait=30)
    assert [claimed["run"]["id"] for claimed in reply["runs"]] == [run["id"]]
    assert datetime.now(timezone.utc) >= start
    # Woken by the scheduled time itself, not by a poll every second (which would have queried 4 times):
    # the first claim found it not due, the one at its time took it (one more if a timer fired a hair early).
    assert counted.calls <= 3


def test_a_heartbeat_with_other_labels_ends_the_pending_claim(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow(labels=["b"])
    agent = http.agent(labels=["a"])["id"]
    thread, result = _claim_in_background(Http(api_server), agent, slots=1, wait=60, labels=["a"])
    wait_for(_waiting(api_server, agent), timeout=10, what="the claim to wait")
    http.ok("post", f"/api/agents/{agent}/heartbeat", json={"labels": ["a", "b"]})
    thread.join(20)
    assert not thread.is_alive(), "the claim kept waiting with labels the agent no longer has"
    assert result == [{"runs": [], "cancel": []}]
    # Asked again with the new labels, the run (labelled b) is handed out.
    run = http.run()
    assert [claimed["run"]["id"] for claimed in http.claim(agent, labels=["a", "b"])["runs"]] == [run["id"]]


def test_a_heartbeat_with_the_same_labels_leaves_the_claim_waiting(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow()
    agent = http.agent(labels=["a"], run_unlabeled=True)["id"]
    thread, result = _claim_in_background(Http(api_server), agent, slots=1, wait=60, labels=["a"], run_unlabeled=True)
    wait_for(_waiting(api_server, agent), timeout=10, what="the claim to wait")
    http.ok("post", f"/api/agents/{agent}/heartbeat", json={"labels": ["a"], "run_unlabeled": True})
    run = http.run()  # still waiting, so this very claim receives it
    thread.join(20)
    assert [claimed["run"]["id"] for claimed in result[0]["runs"]] == [run["id"]]


def test_a_claim_whose_client_left_hands_out_nothing(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow()
    agent = http.agent()["id"]
    body = json.dumps({"slots": 1, "wait": 60}).encode()
    head = (
        f"POST /api/agents/{agent}/claim HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((api_server.host, api_server.port), timeout=10) as client:
        client.sendall(head + body)
        wait_for(_waiting(api_server, agent), timeout=10, what="the claim to wait")
    # The agent is gone (socket closed) while its claim waits; a run arrives and wakes that claim.
    run = http.run()
    wait_for(lambda: not _waiting(api_server, agent)(), timeout=10, what="the abandoned claim to end")
    assert http.ok("get", f"/api/flow_runs/{run['id']}")["state"] == "Scheduled"
    other = http.agent("agent-2")["id"]
    assert [claimed["run"]["id"] for claimed in http.claim(other)["runs"]] == [run["id"]]
