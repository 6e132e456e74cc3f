"""``localagent agent ls`` for a fleet: filters and ``--by-config``, through the installed binary."""

from __future__ import annotations

from typing import Any

from localagent.api.client import ApiClient
from localagent.api.models import AgentRegister
from tests.cli.api_cli_support import cli, cli_json
from tests.support.wait import wait_for

OLD = "aaaaaaaaaaaa1111111111111111"
NEW = "bbbbbbbbbbbb2222222222222222"


def _fleet(url: str) -> None:
    """web-1..3 on the new config (web-3 reports a refused newer one), db-1 on the old one, stopped."""
    with ApiClient(url) as api:
        for n in (1, 2, 3):
            api.register_agent(
                AgentRegister(
                    name=f"web-{n}",
                    hostname=f"web-{n}",
                    labels=["web", "gpu"] if n == 1 else ["web"],
                    config_generation=2,
                    config_hash=NEW,
                    config_error="agent.toml:3: agent.name: must not be empty" if n == 3 else None,
                )
            )
        db = api.register_agent(AgentRegister(name="db-1", hostname="db-1", config_generation=1, config_hash=OLD))
        api.disconnect_agent(db.id)


def _names(url: str, *args: str) -> list[str]:
    return sorted(agent["name"] for agent in cli_json(url, "agent", "ls", *args))


def test_filters_combine(api_server: Any) -> None:
    url = api_server.url
    _fleet(url)
    assert _names(url, "--label", "web") == ["web-1", "web-2", "web-3"]
    assert _names(url, "--label", "web", "--label", "gpu") == ["web-1"]
    assert _names(url, "--host", "web-2") == ["web-2"]
    assert _names(url, "--host", "WEB-2") == ["web-2"]  # host names are not case-sensitive
    assert _names(url, "--host", "web-*", "--config-hash", NEW[:12]) == ["web-1", "web-2", "web-3"]
    assert _names(url, "--status", "stopped") == ["db-1"]
    assert _names(url, "--status", "online", "--config-hash", OLD[:6]) == []
    table = cli(url, "agent", "ls", "--host", "db-*")
    assert table.returncode == 0, table.stderr
    assert "db-1" in table.stdout and "web-1" not in table.stdout and "stopped" in table.stdout


def test_a_bad_status_is_a_usage_error(api_server: Any) -> None:
    result = cli(api_server.url, "agent", "ls", "--status", "sleeping")
    assert result.returncode == 2
    assert "'sleeping' is not one of online, stopped, lost" in result.stderr


def test_by_config_groups_agents_with_error_counts(api_server: Any) -> None:
    url = api_server.url
    _fleet(url)
    groups = cli_json(url, "agent", "ls", "--by-config")
    assert groups == [
        {
            "config_hash": NEW,
            "generation": 2,
            "agents": 3,
            "online": 3,
            "errors": 1,
            "hosts": ["web-1", "web-2", "web-3"],
        },
        {"config_hash": OLD, "generation": 1, "agents": 1, "online": 0, "errors": 0, "hosts": ["db-1"]},
    ]
    table = cli(url, "agent", "ls", "--by-config")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["HASH", "CONFIG", "AGENTS", "ONLINE", "ERRORS", "HOSTS"]
    assert lines[1].split() == [NEW[:12], "gen", "2", "3", "3", "1", "web-1,", "web-2,", "web-3"]
    assert lines[2].split() == [OLD[:12], "gen", "1", "1", "0", "0", "db-1"]
    online = cli_json(url, "agent", "ls", "--by-config", "--status", "online")
    assert [group["config_hash"] for group in online] == [NEW]


def test_lost_agents_are_filtered_by_status(make_api_server: Any) -> None:
    server = make_api_server(agent_timeout=0.5)
    with ApiClient(server.url) as api:
        api.register_agent(AgentRegister(name="quiet", hostname="h1"))
    wait_for(lambda: _names(server.url, "--status", "lost") == ["quiet"], what="the agent to be lost")
    assert _names(server.url, "--status", "online") == []
