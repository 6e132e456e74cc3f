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
    with ApiClient(api_server.url) as api:
        good = api.register_agent(
            AgentRegister(name="host-1", labels=["etl", "gpu"], config_generation=4, config_hash=HASH)
        )
        api.heartbeat(good.id, Heartbeat(running_runs=[], labels=["etl", "gpu"], config_generation=4, config_hash=HASH))
        api.register_agent(
            AgentRegister(
                name="host-2",
                run_unlabeled=True,
                config_generation=7,
                config_hash=HASH,
                config_error="agent.toml:7: agent.max_concurrent_runs: must be >= 0, got -1",
            )
        )
    table = cli(api_server.url, "agent", "ls")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == [
        "NAME",
        "ID",
        "LABELS",
        "HEARTBEAT",
        "STATUS",
        "RUNNING",
        "CONFIG",
        "HASH",
        "CONFIG",
        "ERROR",
    ]
    by_name = {row.split()[0]: row for row in rows}
    before, labels, after = by_name["host-1"].partition("etl, gpu")  # labels print as the docs write them
    assert labels and len(before.split()) == 2
    cells = after.split()
    assert re.fullmatch(r"\d+s", cells[0])
    assert cells[1:] == ["ago", "ok", "0", "gen", "4", HASH[:12], "-"]
    assert "(+unlabeled)" in by_name["host-2"]
    assert "gen 7" in by_name["host-2"]
    assert by_name["host-2"].endswith("agent.toml:7: agent.max_concurrent_runs: must be >= 0, got -1")
    agents = cli_json(api_server.url, "agent", "ls")
    first = next(agent for agent in agents if agent["name"] == "host-1")
    assert first["config_hash"] == HASH
    assert first["config_generation"] == 4
    assert first["lost"] is False
    assert {"id", "labels", "last_heartbeat", "running_runs", "config_error"} <= set(first)


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
