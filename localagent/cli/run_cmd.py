"""``localagent run``: load the configuration (failing fast on bad input) and run the agent."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import typer

from localagent.cli.run_options import RunOptions, with_run_options

if TYPE_CHECKING:
    from localagent.config import LoadedConfig

RUN_HELP = """Run the agent: claim flow runs whose labels it accepts and run them as local processes.

Config files are layered in order (later wins), then LOCALAGENT_<SECTION>__<KEY> variables, then these
flags. The files (and api.key_file) are watched and hot-reloaded; SIGHUP reloads too.

Examples:

  localagent run -c agent.example.toml

  localagent run -c base.toml -c host.toml --label gpu --limit 4

  localagent run -c agent.toml --set runs.stop_grace=1m --no-hostname-label
"""


def register(app: typer.Typer) -> None:
    """Add the ``run`` command to ``app``."""

    @app.command("run", help=RUN_HELP)
    @with_run_options
    def run(options: RunOptions) -> None:
        from localagent.config import load_config

        files = list(options.config)
        flags = options.to_flags()
        # Captured once: every reload sees the environment the agent started with.
        environ = dict(os.environ)

        def loader() -> LoadedConfig:
            return load_config(files, flags, environ)

        first = loader()  # a ConfigError ends the command here: cli.main prints it and exits 1
        try:
            from localagent.runtime.service import run_agent
        except ImportError as exc:
            if exc.name != "localagent.runtime.service":
                raise
            # Temporary, until the agent runtime lands: show what would run.
            from localagent.config.render import render_toml

            typer.echo(render_toml(first), nl=False)
            raise typer.Exit(0) from None
        raise typer.Exit(run_agent(loader))
