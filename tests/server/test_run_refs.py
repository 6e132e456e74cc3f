"""Naming a run by a unique id prefix or its name on the read and cancel endpoints; a run token stays exact."""

from __future__ import annotations

from typing import Any

from tests.conftest import MakeApiServer
from tests.server.backends import make_server, pg_database, pg_url
from tests.server.helpers import Http

__all__ = ["make_server", "pg_database", "pg_url"]  # fixtures used by name


def _distinct_prefix(run: dict[str, Any], others: list[dict[str, Any]]) -> str:
    """The shortest prefix of ``run``'s id that no other run's id starts with."""
    for length in range(1, 33):
        prefix = run["id"][:length]
        if not any(other["id"].startswith(prefix) for other in others):
            return prefix
    raise AssertionError("ids are unique")


def test_a_unique_prefix_and_a_name_name_the_run(make_server: MakeApiServer) -> None:
    http = Http(make_server())
    http.flow()
    runs = [http.run(name=f"run-{i}") for i in range(5)]
    target = runs[2]
    prefix = _distinct_prefix(target, runs[:2] + runs[3:])
    assert http.ok("get", f"/api/flow_runs/{prefix}")["id"] == target["id"]
    assert http.ok("get", f"/api/flow_runs/{prefix.upper()}")["id"] == target["id"]  # hex in any case
    assert http.ok("get", "/api/flow_runs/run-2")["id"] == target["id"]
    assert http.ok("get", "/api/flow_runs/run-2/logs")["lines"] == []
    assert http.ok("post", f"/api/flow_runs/{target['name']}/cancel")["state"] == "Cancelled"
    assert http.ok("get", f"/api/flow_runs/{target['id']}")["state"] == "Cancelled"


def test_a_generated_name_names_the_run(make_server: MakeApiServer) -> None:
    http = Http(make_server())
    http.flow()
    run = http.run()
    assert http.ok("get", f"/api/flow_runs/{run['name']}")["id"] == run["id"]


def test_an_ambiguous_reference_lists_the_matches(make_server: MakeApiServer) -> None:
    http = Http(make_server())
    http.flow()
    first = http.run(name="nightly")
    second = http.run(name="nightly")
    reply = http.get("/api/flow_runs/nightly")
    assert reply.status_code == 409
    detail = reply.json()["detail"]
    assert detail.startswith("flow run 'nightly' is ambiguous: it matches 2 runs (newest first): ")
    assert detail.index(second["id"]) < detail.index(first["id"])  # newest first
    assert "(nightly, flow hello, Scheduled, created " in detail
    assert detail.endswith("Name the run by its id or a longer prefix of it")
    # cancel refuses to guess too, and cancels nothing
    assert http.post("/api/flow_runs/nightly/cancel").status_code == 409
    assert {r["state"] for r in http.ok("get", "/api/flow_runs")} == {"Scheduled"}
    # each is still reachable by its id
    assert http.ok("get", f"/api/flow_runs/{first['id']}")["name"] == "nightly"


def test_a_prefix_matching_many_runs_is_ambiguous_and_counts_the_rest(make_server: MakeApiServer) -> None:
    http = Http(make_server())
    http.flow()
    runs = [http.run() for _ in range(40)]
    digit = max("0123456789abcdef", key=lambda d: sum(r["id"].startswith(d) for r in runs))
    matching = sum(r["id"].startswith(digit) for r in runs)
    reply = http.get(f"/api/flow_runs/{digit}")
    if matching == 1:
        assert reply.status_code == 200
        return
    assert reply.status_code == 409
    detail = reply.json()["detail"]
    assert f"it matches {matching} runs" in detail
    if matching > 10:
        assert f"and {matching - 10} more" in detail


def test_unknown_references_are_404(make_server: MakeApiServer) -> None:
    http = Http(make_server())
    http.flow()
    http.run(name="known")
    for ref in ("no-such-run", "0" * 32, "zzzz", "%20"):
        reply = http.get(f"/api/flow_runs/{ref}")
        assert reply.status_code == 404, ref
        assert "not found" in reply.json()["detail"]
    assert http.post("/api/flow_runs/no-such-run/cancel").status_code == 404
    assert http.get("/api/flow_runs/no-such-run/logs").status_code == 404


def test_state_reports_and_log_batches_take_exact_ids_only(make_server: MakeApiServer) -> None:
    http = Http(make_server())
    http.flow()
    run = http.run(name="exact-only")
    http.claim(http.agent()["id"], run_unlabeled=True)
    assert http.state("exact-only", "Running").status_code == 404
    assert http.state(run["id"][:8], "Running").status_code == 404
    line = {"seq": 0, "time": "2024-01-01T00:00:00Z", "text": "hi"}
    assert http.post(f"/api/flow_runs/{run['id'][:8]}/logs", json={"lines": [line]}).status_code == 404
    assert http.state(run["id"], "Running").status_code == 200


def test_a_run_token_names_its_run_by_its_exact_id_only(make_server: MakeApiServer) -> None:
    server = make_server(api_keys=("k",))
    http = Http(server, key="k")
    http.flow()
    mine = http.run(name="mine")
    http.run(name="theirs")
    claimed = http.claim(http.agent()["id"], run_unlabeled=True)["runs"][0]
    assert claimed["run"]["id"] == mine["id"]
    token = Http(server, key=claimed["token"])
    assert token.ok("get", f"/api/flow_runs/{mine['id']}")["name"] == "mine"
    # not by its name or a prefix (the answer must not reveal other runs), and never another run's name
    for ref in ("mine", mine["id"][:8], "theirs"):
        reply = token.get(f"/api/flow_runs/{ref}")
        assert reply.status_code == 403, ref
        assert reply.json()["detail"] == f"this run token belongs to another flow run, not {ref}"
    assert token.get("/api/flow_runs/mine/logs").status_code == 403
    # an operator key resolves the name
    assert http.ok("get", "/api/flow_runs/mine")["id"] == mine["id"]
