"""``localagent agent ls`` through the installed binary, and the help of every API command."""

from __future__ import annotations

import re
from typing import Any

import pytest
from typer.testing import CliRunner

from localagent.api.client import ApiClient
from localagent.api.models import AgentRegister, Heartbeat
from localagent.cli.main import app
from tests.cli.api_cli_support import cli, cli_json

HASH = "0123456789abcdef0123456789abcdef"


def test_agent_ls_shows_labels_heartbeat_config_and_runs(api_server: Any) -> None:
    long_error = (
        "agent.toml:7: agent.max_concurrent_runs: must be >= 0, got -1; agent.toml:9: runs.stop_grace: "
        "expected a duration like '30s' or '1m30s', got 'soon'; flows.toml:3: flow.command: must not be empty"
    )
    with ApiClient(api_server.url) as api:
        good = api.register_agent(
            AgentRegister(
                name="host-1",
                hostname="box-1",
                labels=["etl", "gpu"],
                config_generation=4,
                config_hash=HASH,
                max_concurrent_runs=4,
            )
        )
        api.heartbeat(
            good.id,
            Heartbeat(
                running_runs=["r1"], labels=["etl", "gpu"], config_generation=4, config_hash=HASH, max_concurrent_runs=4
            ),
        )
        api.register_agent(
            AgentRegister(
                name="host-2", run_unlabeled=True, config_generation=7, config_hash=HASH, config_error=long_error
            )
        )
    table = cli(api_server.url, "agent", "ls")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["NAME", "ID", "HOST", "LABELS", "STATUS", "HEARTBEAT", "RUNNING", "CONFIG", "HASH"]
    cells = rows[0].split()
    assert cells[:5] == ["host-1", good.id, "box-1", "etl,", "gpu"]
    assert cells[5] == "online"
    assert re.fullmatch(r"\d+s", cells[6])
    assert cells[7:] == ["ago", "1/4", "gen", "4", HASH[:12]]
    assert rows[1].split()[0] == "host-2"
    assert "(+unlabeled)" in rows[1]
    assert "gen 7" in rows[1]
    # the config error follows its agent's row in full, wrapped to the terminal (COLUMNS=200), never cut
    error_lines = rows[2:]
    assert error_lines[0].startswith("    config error: agent.toml:7: ")
    assert all(len(line) <= 200 for line in error_lines)
    assert " ".join(line.strip() for line in error_lines) == f"config error: {long_error}"
    assert "..." not in table.stdout
    agents = cli_json(api_server.url, "agent", "ls")
    first = next(agent for agent in agents if agent["name"] == "host-1")
    assert first["config_hash"] == HASH
    assert first["config_generation"] == 4
    assert first["lost"] is False
    assert first["max_concurrent_runs"] == 4
    assert {"id", "labels", "last_heartbeat", "running_runs", "config_error"} <= set(first)
    second = next(agent for agent in agents if agent["name"] == "host-2")
    assert second["config_error"] == long_error


def test_agent_ls_shows_a_stopped_agent_once_across_restarts_and_all_shows_history(api_server: Any) -> None:
    with ApiClient(api_server.url) as api:
        first = api.register_agent(AgentRegister(name="restarts", hostname="box"))
        api.disconnect_agent(first.id)
        stopped = cli(api_server.url, "agent", "ls")
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.splitlines()[1].split()[:5] == ["restarts", first.id, "box", "-", "stopped"]
        again = api.register_agent(AgentRegister(name="restarts", hostname="box"))
        assert again.id == first.id
        twin = api.register_agent(AgentRegister(name="restarts", hostname="box"))  # a second one, running at once
        api.disconnect_agent(twin.id)
        api.disconnect_agent(again.id)
        third = api.register_agent(AgentRegister(name="restarts", hostname="box"))
    listed = cli(api_server.url, "agent", "ls")
    assert [row.split()[1] for row in listed.stdout.splitlines()[1:]] == [third.id]
    history = cli(api_server.url, "agent", "ls", "--all")
    assert history.returncode == 0, history.stderr
    assert sorted(row.split()[1] for row in history.stdout.splitlines()[1:]) == sorted({first.id, twin.id})
    assert [row.split()[4] for row in history.stdout.splitlines()[1:]].count("stopped") == 1
    assert len(cli_json(api_server.url, "agent", "ls", "--all")) == 2


@pytest.mark.parametrize(
    "command",
    [
        ["flow", "register"],
        ["flow", "apply"],
        ["flow", "ls"],
        ["flow", "show"],
        ["flow", "run"],
        ["flow", "schema"],
        ["flow-run", "ls"],
        ["flow-run", "show"],
        ["flow-run", "logs"],
        ["flow-run", "cancel"],
        ["agent", "ls"],
    ],
    ids=" ".join,
)
def test_every_api_command_help_has_an_example(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert f"Example: `localagent {' '.join(command)}" in result.output
