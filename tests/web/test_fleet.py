"""Grouping agents by config hash; a restarted agent's earlier registrations are 'stopped', not lost."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from localagent.api.models import Agent
from localagent.server.web.fleet import build_fleet

NOW = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)


def agent(agent_id: str, name: str, config_hash: str, *, age: float = 0, lost: bool = False, **extra: object) -> Agent:
    fields: dict[str, object] = {
        "id": agent_id,
        "name": name,
        "labels": [],
        "run_unlabeled": False,
        "run_config_types": ["universal"],
        "hostname": f"{name}.lan",
        "version": "0.1.0",
        "config_generation": 1,
        "config_hash": config_hash,
        "config_error": None,
        "registered": NOW - timedelta(hours=1, seconds=-age),
        "last_heartbeat": NOW - timedelta(seconds=age),
        "lost": lost,
    }
    fields.update(extra)
    return Agent.model_validate(fields)


def test_groups_largest_first_with_their_errors() -> None:
    fleet = build_fleet(
        [
            agent("a1", "web-1", "aaa"),
            agent("b1", "db-1", "bbb", config_error="agent.toml: bad"),
            agent("a2", "web-2", "aaa"),
            agent("a3", "web-3", "aaa", age=300, lost=True),
        ],
        NOW,
    )
    assert [(g.config_hash, g.hosts, g.errors) for g in fleet.groups] == [("aaa", 3, 0), ("bbb", 1, 1)]
    assert [a.status for a in fleet.groups[0].agents] == ["online", "online", "lost"]
    assert (fleet.online, fleet.lost, fleet.with_errors) == (3, 1, 1)


def test_a_restarted_agent_leaves_its_old_registration_as_stopped() -> None:
    old = agent("old", "web-1", "aaa", age=600, lost=True, registered=NOW - timedelta(days=1))
    new = agent("new", "web-1", "bbb")
    fleet = build_fleet([old, new], NOW)
    assert [(g.config_hash, [a.agent.id for a in g.agents]) for g in fleet.groups] == [("bbb", ["new"])]
    assert [(a.agent.id, a.status) for a in fleet.stopped] == [("old", "stopped")]
    assert fleet.lost == 0
