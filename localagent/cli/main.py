"""The ``localagent`` typer app: wires the command groups together and turns errors into exit codes.

Heavy imports (FastAPI, SQLAlchemy, requests) stay inside the commands so that ``--help`` is quick.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

# typer >= 0.24 vendors click as typer._click (the exceptions it raises come from there); older typers use click.
try:
    from typer._click import exceptions as cli_errors
except ImportError:  # pragma: no cover - older typer
    from click import exceptions as cli_errors  # type: ignore[no-redef, unused-ignore]

from localagent import __version__
from localagent.cli import agent_cmd, config_cmd, flow_cmd, flow_run_cmd, install_cmd, run_cmd, server_cmd
from localagent.errors import LocalAgentError

EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="localagent",
    no_args_is_help=True,
    rich_markup_mode=None,
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

    Start here, in one shell (it stays in the foreground):

    \b
      localagent run -c agent.example.toml

    and in another:

    \b
      localagent flow register hello --command 'echo hi'
      localagent flow run hello --watch
    """


run_cmd.register(app)
app.add_typer(config_cmd.app, name="config")
app.add_typer(server_cmd.app, name="server")
app.add_typer(flow_cmd.app, name="flow")
app.add_typer(flow_run_cmd.app, name="flow-run")
app.add_typer(agent_cmd.app, name="agent")
app.add_typer(install_cmd.app, name="install")

# Plain help and one-line errors everywhere (see main()): no rich boxes, whose markup also swallowed
# text such as "[program:...]" and whose metavars read "<list[Path]>".
for _group in app.registered_groups:
    if _group.typer_instance is not None:
        _group.typer_instance.rich_markup_mode = None


def natural_metavars(command: Any) -> None:
    """Give every option that takes a value and names no metavar one that reads naturally.

    typer would show its type (``<str>``, ``<int range>``, ``<list[str]>``); ``--flow FLOW``,
    ``--retries RETRIES`` and ``--run-config local|universal`` say what to write.
    """
    for param in getattr(command, "params", ()):
        if getattr(param, "param_type_name", "") == "argument":
            if param.metavar is None:
                param.metavar = str(param.name).upper()
            if hasattr(param, "display_type_rich"):  # typer's "NAME <str>" in the Arguments section
                param.display_type_rich = lambda ctx: None
            continue
        if param.metavar is not None:
            continue
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            continue
        kind = getattr(param, "type_descriptor", None) or getattr(param, "type", None)  # typer >= 0.24, else click
        choices = getattr(kind, "choices", None)
        if choices:
            param.metavar = "|".join(str(getattr(choice, "value", choice)) for choice in choices)
        else:
            longest = max(param.opts, key=len).lstrip("-")
            param.metavar = longest.replace("-", "_").upper()
    for sub in getattr(command, "commands", {}).values():
        natural_metavars(sub)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``localagent`` console script.

    Every error is printed in one style, ``<Kind>: <message>`` on stderr with no traceback: errors we raise
    on purpose (``ConfigError: ...``, exit code of the error) and usage errors
    (``UsageError: No such option: --bogus (see 'localagent flow ls --help')``, exit 2). One line each, so
    they read the same in a terminal, a service log and a CI transcript, and ``grep Error:`` finds them all.
    """
    command = typer.main.get_command(app)
    natural_metavars(command)
    try:
        code = command.main(args=argv, prog_name="localagent", standalone_mode=False)
    except LocalAgentError as exc:
        typer.echo(f"{type(exc).__name__}: {exc}", err=True)
        sys.exit(exc.exit_code)
    except cli_errors.NoArgsIsHelpError as exc:  # `localagent flow`: the group's help
        typer.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
        sys.exit(exc.exit_code)
    except cli_errors.UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        typer.echo(f"UsageError: {exc.format_message()}{where}", err=True)
        sys.exit(exc.exit_code)
    except cli_errors.ClickException as exc:
        typer.echo(f"Error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        sys.exit(EXIT_INTERRUPTED)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
