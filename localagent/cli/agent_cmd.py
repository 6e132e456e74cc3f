"""``localagent agent``: the agents the API knows, their config and what they run."""

from __future__ import annotations

import dataclasses
import json
import shutil
import textwrap
from typing import TYPE_CHECKING, Annotated

import typer

from localagent.cli.agent_fleet import STATUSES, AgentFilter, agent_status, config_summary
from localagent.cli.common import (
    DEFAULT_API_URL,
    ApiKeyOption,
    ApiUrlOption,
    JsonOption,
    api_client,
    format_ago,
    format_labels,
    print_json,
    table_lines,
)

if TYPE_CHECKING:
    from localagent.api.models import Agent

app = typer.Typer(no_args_is_help=True, help="List the agents known to the API.")

_HASH_WIDTH = 12
_ERROR_INDENT = "    "


def _running(agent: Agent) -> str:
    count = len(agent.running_runs)
    return f"{count}/{agent.max_concurrent_runs}" if agent.max_concurrent_runs else str(count)


def _error_lines(error: str, width: int) -> list[str]:
    """The whole config error under its agent's row, wrapped to the terminal, never cut."""
    lines: list[str] = []
    first = "config error: "
    for index, part in enumerate(error.splitlines() or [""]):
        lines.extend(
            textwrap.wrap(
                part,
                width=max(width, 40),
                initial_indent=_ERROR_INDENT + (first if index == 0 else " " * len(first)),
                subsequent_indent=_ERROR_INDENT + " " * len(first),
                break_long_words=False,
                break_on_hyphens=False,
            )
            or [_ERROR_INDENT]
        )
    return lines


@app.command("ls")
def list_agents(
    history: Annotated[
        bool,
        typer.Option("--all", help="Every record: also earlier ones of the same name and host (history)."),
    ] = False,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", metavar="LABEL", help="Only agents with this label (repeatable: all of them)."),
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", metavar="HOST", help="Only agents on this host (a shell pattern: 'web-*').")
    ] = None,
    status: Annotated[
        str | None, typer.Option("--status", metavar="online|stopped|lost", help="Only agents in this status.")
    ] = None,
    config_hash: Annotated[
        str | None, typer.Option("--config-hash", metavar="HASH", help="Only agents whose config hash starts so.")
    ] = None,
    by_config: Annotated[
        bool,
        typer.Option(
            "--by-config", help="A summary instead: agents grouped by config hash and generation, with error counts."
        ),
    ] = False,
    as_json: JsonOption = False,
    api: ApiUrlOption = DEFAULT_API_URL,
    key: ApiKeyOption = None,
) -> None:
    """List agents: host, labels, status (online, stopped or lost), last heartbeat, runs running (of its
    max_concurrent_runs), config generation and hash; a config error is printed in full under its agent.

    An agent keeps one record per name and host across restarts; `--all` also lists older records.
    The filters combine (every one must hold); `--by-config` summarises the agents the filters keep.

    Example: `localagent agent ls --api http://orchestrator:4300 --key "$KEY"`

    Example: `localagent agent ls --status online --host 'web-*' --by-config`
    """
    if status is not None and status.lower() not in STATUSES:
        raise typer.BadParameter(f"{status!r} is not one of {', '.join(STATUSES)}", param_hint="--status")
    wanted = AgentFilter(
        labels=tuple(label or ()),
        host=host,
        status=status.lower() if status is not None else None,
        config_hash=config_hash.lower() if config_hash is not None else None,
    )
    with api_client(api, key) as client:
        agents = [agent for agent in client.list_agents(history=history) if wanted.matches(agent)]
    if by_config:
        _print_by_config(agents, as_json)
        return
    if as_json:
        print_json(agents)
        return
    rows = [
        [
            agent.name,
            agent.id,
            agent.hostname or "-",
            format_labels(agent.labels) + (" (+unlabeled)" if agent.run_unlabeled else ""),
            agent_status(agent),
            format_ago(agent.last_heartbeat),
            _running(agent),
            f"gen {agent.config_generation}",
            agent.config_hash[:_HASH_WIDTH] or "-",
        ]
        for agent in agents
    ]
    width = shutil.get_terminal_size((100, 24)).columns
    headers = ["NAME", "ID", "HOST", "LABELS", "STATUS", "HEARTBEAT", "RUNNING", "CONFIG", "HASH"]
    lines = table_lines(headers, rows)
    typer.echo(lines[0])
    for agent, line in zip(agents, lines[1:], strict=True):
        typer.echo(line)
        if agent.config_error:
            for error_line in _error_lines(agent.config_error, width):
                typer.echo(error_line)


def _print_by_config(agents: list[Agent], as_json: bool) -> None:
    groups = config_summary(agents)
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(group) for group in groups], indent=2))
        return
    rows = [
        [
            group.config_hash[:_HASH_WIDTH] or "-",
            f"gen {group.generation}",
            str(group.agents),
            str(group.online),
            str(group.errors),
            _hosts(group.hosts),
        ]
        for group in groups
    ]
    for line in table_lines(["HASH", "CONFIG", "AGENTS", "ONLINE", "ERRORS", "HOSTS"], rows):
        typer.echo(line)


def _hosts(hosts: tuple[str, ...], shown: int = 4) -> str:
    if len(hosts) <= shown:
        return ", ".join(hosts)
    return ", ".join(hosts[:shown]) + f" (+{len(hosts) - shown} more)"
