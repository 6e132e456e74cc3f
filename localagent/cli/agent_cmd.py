"""``localagent agent``: the agents the API knows, their config and what they run."""

from __future__ import annotations

import typer

from localagent.cli.common import (
    DEFAULT_API_URL,
    ApiKeyOption,
    ApiUrlOption,
    JsonOption,
    api_client,
    format_ago,
    format_labels,
    print_json,
    print_table,
    shorten,
)

app = typer.Typer(no_args_is_help=True, help="List the agents known to the API.")

_HASH_WIDTH = 12


@app.command("ls")
def list_agents(
    as_json: JsonOption = False,
    api: ApiUrlOption = DEFAULT_API_URL,
    key: ApiKeyOption = None,
) -> None:
    """List agents: labels, last heartbeat, config generation/hash/error, runs running, lost or not.

    Example: `localagent agent ls --api http://orchestrator:4300 --key "$KEY"`
    """
    with api_client(api, key) as client:
        agents = client.list_agents()
    if as_json:
        print_json(agents)
        return
    print_table(
        ["NAME", "ID", "LABELS", "HEARTBEAT", "STATUS", "RUNNING", "CONFIG", "HASH", "CONFIG ERROR"],
        (
            [
                agent.name,
                agent.id,
                format_labels(agent.labels) + (" (+unlabeled)" if agent.run_unlabeled else ""),
                format_ago(agent.last_heartbeat),
                "lost" if agent.lost else "ok",
                str(len(agent.running_runs)),
                f"gen {agent.config_generation}",
                agent.config_hash[:_HASH_WIDTH] or "-",
                shorten(agent.config_error, 80) if agent.config_error else "-",
            ]
            for agent in agents
        ),
    )
