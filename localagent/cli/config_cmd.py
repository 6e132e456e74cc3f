"""``localagent config validate|show|schema``: check, explain and describe agent configuration."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from localagent.cli.common import report_config_error
from localagent.cli.run_options import RunOptions, with_run_options

EXIT_INVALID = 1

app = typer.Typer(
    no_args_is_help=True,
    help="Check a config, print the effective config and where each value came from, print the JSON schema.",
)


@app.command("validate")
@with_run_options
def validate(options: RunOptions) -> None:
    """Check config files (and any overrides) the way `localagent run` would load them.

    Exits 0 with one OK line, or 1 with every problem on stderr, one a line:
    `agent.toml:7: agent.max_concurrent_runs: must be >= 0, got -1`.

    Examples:

      localagent config validate -c agent.example.toml

      localagent config validate -c base.toml -c host.toml
    """
    from localagent.config import load_config
    from localagent.config.render import public_hash
    from localagent.errors import ConfigError

    try:
        loaded = load_config(list(options.config), options.to_flags(), dict(os.environ))
    except ConfigError as exc:
        report_config_error(exc, EXIT_INVALID)
    what = ", ".join(str(path) for path in options.config) or "built-in defaults"
    typer.echo(f"OK: {what} is valid (hash {public_hash(loaded)[:12]})")


@app.command("show")
@with_run_options
def show(
    options: RunOptions,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of TOML.")] = False,
    sources: Annotated[bool, typer.Option("--sources", help="Say beside each key where its value came from.")] = False,
) -> None:
    """Print the effective configuration: files, environment and flags merged; secrets masked.

    Examples:

      localagent config show -c base.toml -c host.toml --sources

      LOCALAGENT_AGENT__POLL_INTERVAL=3s localagent config show --json -c agent.toml --label cli
    """
    from localagent.config import load_config
    from localagent.config.render import render_json, render_toml

    loaded = load_config(list(options.config), options.to_flags(), dict(os.environ))
    if as_json:
        typer.echo(render_json(loaded, sources=sources))
    else:
        typer.echo(render_toml(loaded, sources=sources), nl=False)


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of agent.toml (the content of schemas/agent.schema.json).

    Example:

      localagent config schema > schemas/agent.schema.json
    """
    from localagent.config.schema import schema_text

    typer.echo(schema_text(), nl=False)
