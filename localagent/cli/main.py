"""The ``localagent`` typer app: wires the command groups together and turns errors into exit codes.

Heavy imports (FastAPI, SQLAlchemy, requests) stay inside the commands so that ``--help`` is quick.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from localagent import __version__
from localagent.cli import agent_cmd, config_cmd, flow_cmd, flow_run_cmd, install_cmd, run_cmd, server_cmd
from localagent.errors import LocalAgentError

EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="localagent",
    help="A declarative, TOML-configured agent that runs flow runs as local processes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"localagent {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """A declarative, TOML-configured agent that runs flow runs as local processes.

    Start here: `localagent run -c agent.example.toml`, then from another shell
    `localagent flow register hello --command 'echo hi'` and `localagent flow run hello --watch`.
    """


run_cmd.register(app)
app.add_typer(config_cmd.app, name="config")
app.add_typer(server_cmd.app, name="server")
app.add_typer(flow_cmd.app, name="flow")
app.add_typer(flow_run_cmd.app, name="flow-run")
app.add_typer(agent_cmd.app, name="agent")
app.add_typer(install_cmd.app, name="install")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``localagent`` console script.

    Typer (click) handles usage errors (exit 2) and ``typer.Exit``; errors we raise on purpose are printed
    here as one line, ``ConfigError: ...``, with their exit code and no traceback.
    """
    try:
        app(args=argv, prog_name="localagent")
    except LocalAgentError as exc:
        typer.echo(f"{type(exc).__name__}: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
