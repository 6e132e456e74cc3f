"""``localagent install supervisord|systemd``: print (or write) a service definition that runs this agent.

Both take ``-c`` and every override flag of ``localagent run``; the definition runs
``<absolute localagent> run`` with the same meaning, stops the agent with SIGTERM so it drains, and never
holds the API key: a key given with ``--key`` (or ``LOCALAGENT_API__KEY``) is written to a mode-0600
key file that the service reads through ``api.key_file``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from localagent.cli.common import report_config_error
from localagent.cli.run_options import RunOptions, with_run_options

if TYPE_CHECKING:
    from localagent.errors import ConfigError
    from localagent.install import ServicePlan
    from localagent.install.plan import ServiceUser

EXIT_INVALID = 1
PANEL = "Service"

app = typer.Typer(
    no_args_is_help=True,
    help="Print a supervisord program or systemd unit that runs this agent as a service.",
)


def _check_service_name(value: str | None) -> str | None:
    from localagent.install.plan import SERVICE_NAME_PATTERN

    if value is not None and not SERVICE_NAME_PATTERN.match(value):
        raise typer.BadParameter(f"expected letters, digits, '_', '.' and '-', got {value!r}")
    return value


OutputOption = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        metavar="FILE",
        help="Write the definition (and the key file for --key) to FILE. Without -o it is printed and nothing "
        "is written.",
        rich_help_panel=PANEL,
    ),
]
ServiceNameOption = Annotated[
    str | None,
    typer.Option(
        "--service-name",
        metavar="NAME",
        callback=_check_service_name,
        help="Program / unit name. Default: localagent-<agent.name>.",
        rich_help_panel=PANEL,
    ),
]
UserOption = Annotated[
    str | None,
    typer.Option(
        "--user",
        metavar="USER",
        help="Run the agent as this user (user= / User=). The default state dir becomes that user's "
        "~/.local/state/localagent, and a key file written by root is given to that user.",
        rich_help_panel=PANEL,
    ),
]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Replace a key file that holds a different key (a running service reads it).",
        rich_help_panel=PANEL,
    ),
]
KeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        metavar="FILE",
        help="Where to write the key given with --key (mode 0600). Default: <agent.state_dir>/api.key.",
        rich_help_panel=PANEL,
    ),
]


@app.command("supervisord")
@with_run_options
def supervisord(
    options: RunOptions,
    output: OutputOption = None,
    service_name: ServiceNameOption = None,
    user: UserOption = None,
    key_file: KeyFileOption = None,
    force: ForceOption = False,
) -> None:
    """Print a supervisord [program:...] section that runs this agent.

    Put it in supervisord's include directory, then `supervisorctl reread && supervisorctl update`.
    `supervisorctl stop` drains: runs may finish for up to runs.drain_timeout.

    Examples:

      localagent install supervisord -c /etc/localagent/agent.toml -o /etc/supervisor/conf.d/localagent.conf

      localagent install supervisord -c agent.toml --api https://api.example --key "$KEY" --label gpu
    """
    from localagent.install import render_supervisord

    _install(options, render_supervisord, output, service_name, user, key_file, force)
    if output is not None:
        typer.echo("next: supervisorctl reread && supervisorctl update", err=True)


@app.command("systemd")
@with_run_options
def systemd(
    options: RunOptions,
    output: OutputOption = None,
    service_name: ServiceNameOption = None,
    user: UserOption = None,
    key_file: KeyFileOption = None,
    force: ForceOption = False,
) -> None:
    """Print a systemd .service unit that runs this agent.

    Save it as /etc/systemd/system/<name>.service.
    Then: `systemctl daemon-reload && systemctl enable --now <name>`.
    `systemctl stop` drains: runs may finish for up to runs.drain_timeout.

    Examples:

      localagent install systemd -c /etc/localagent/agent.toml --user localagent -o localagent.service

      localagent install systemd -c agent.toml --key "$KEY" --key-file /etc/localagent/api.key
    """
    from localagent.install import render_systemd

    plan = _install(options, render_systemd, output, service_name, user, key_file, force)
    if output is not None:
        typer.echo(f"next: systemctl daemon-reload && systemctl enable --now {plan.name}", err=True)


def _sets_api_key(assignment: str) -> bool:
    return assignment.partition("=")[0].strip().strip("\"'") == "api.key"


def _install(
    options: RunOptions,
    render: Callable[[ServicePlan], str],
    output: Path | None,
    service_name: str | None,
    user: str | None,
    key_file: Path | None,
    force: bool,
) -> ServicePlan:
    """Load the config like ``run`` does, keep the key out, render; with ``-o`` write the key file and output.

    Printing (no ``-o``) writes nothing at all; it says where the key file would go.
    """
    from localagent.config import load_config
    from localagent.errors import ConfigError
    from localagent.install import build_plan, service_key_file
    from localagent.install.plan import is_api_key_variable, lookup_user, service_state_dir

    environ = dict(os.environ)
    files = list(options.config)
    # What the service itself will be given: the same options and variables, minus every way of passing a key.
    service_options = dataclasses.replace(
        options, key=None, set=tuple(item for item in options.set if not _sets_api_key(item))
    )
    service_environ = {name: value for name, value in environ.items() if not is_api_key_variable(name)}
    try:
        loaded = load_config(files, options.to_flags(), environ)
        without_key = load_config(files, service_options.to_flags(), service_environ)
        account = lookup_user(user) if user is not None else None
        state_dir = service_state_dir(loaded, account)
        target = service_key_file(loaded, without_key, key_file, state_dir)
        plan = build_plan(
            loaded,
            service_options.to_argv(absolute=True, include_key=False),
            environ,
            Path.cwd(),
            name=service_name,
            user=user,
            key_file=target,
            state_dir=state_dir,
        )
        text = render(plan)
        if account is not None and loaded.origins.get("agent.state_dir") == "default":
            typer.echo(f"state dir for user {user}: {state_dir} (from that user's home directory)", err=True)
        if target is not None and loaded.api_key is not None:
            _place_key(target, loaded.api_key, output is not None, force, account)
    except ConfigError as exc:
        _report_invalid(exc)
    _warn_missing_variables(files, service_options, plan)
    _warn_secrets_in_clear(service_options, plan)
    if output is None:
        typer.echo(text, nl=False)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            typer.echo(f"error: cannot write {output}: {exc.strerror or exc}", err=True)
            raise typer.Exit(EXIT_INVALID) from None
        typer.echo(f"wrote {output.absolute()}", err=True)
    return plan


def _place_key(target: Path, key: str, writing: bool, force: bool, account: ServiceUser | None) -> None:
    """Write the key file when writing the definition; refuse to replace a different key without --force."""
    from localagent.errors import ConfigError, ConfigProblem
    from localagent.install.keys import existing_key, write_key_file

    if not writing:
        typer.echo(
            f"printed only, nothing written: with -o FILE the API key also goes to {target} (mode 0600), "
            "which the service reads via api.key_file",
            err=True,
        )
        return
    current = existing_key(target)
    if current == key:
        typer.echo(f"the key file {target} already holds this key; left as it is", err=True)
        return
    if target.exists() and not force:
        raise ConfigError(
            [
                ConfigProblem(
                    str(target),
                    "api.key_file",
                    "holds a different key, which a running service may be reading: pass --force to replace "
                    "it, or choose another file with --key-file",
                )
            ]
        )
    owner = (account.uid, account.gid) if account is not None and os.geteuid() == 0 else None
    write_key_file(target, key, owner)
    typer.echo(f"wrote the API key to {target} (mode 0600); the service reads it via api.key_file", err=True)


def _report_invalid(exc: ConfigError) -> NoReturn:
    """Every problem on its own line, as ``localagent config validate`` prints them; exit 1."""
    report_config_error(exc, EXIT_INVALID)


def _warn_secrets_in_clear(service_options: RunOptions, plan: ServicePlan) -> None:
    """Warn about secret-looking ``runs.env`` values the definition would hold in clear text.

    The API key never goes there (it moves to a private key file); a variable named like a secret that
    reaches runs through ``--env``, ``--set runs.env.NAME=`` or ``LOCALAGENT_RUNS__ENV__NAME`` would be
    written into a file that is usually world-readable.
    """
    from localagent.config.render import SECRET_ENV_NAME
    from localagent.config.sources import ENV_PREFIX

    found: list[str] = []
    for item in service_options.env:
        name = item.partition("=")[0]
        if SECRET_ENV_NAME.search(name):
            found.append(f"--env {name}=...")
    for item in service_options.set:
        key = item.partition("=")[0].strip()
        if key.lower().startswith("runs.env.") and SECRET_ENV_NAME.search(key[len("runs.env.") :]):
            found.append(f"--set {key}=...")
    env_prefix = f"{ENV_PREFIX}RUNS__ENV__"
    for name, _value in plan.environment:
        if name.upper().startswith(env_prefix) and SECRET_ENV_NAME.search(name[len(env_prefix) :]):
            found.append(name)
    if found:
        typer.echo(
            f"warning: the service definition holds these values in clear text: {', '.join(found)}; anyone who "
            "can read it sees them. Put them in agent.toml (mode 0600) or in a file only the service reads "
            "(systemd EnvironmentFile= in a drop-in, mode 0600) instead",
            err=True,
        )


def _warn_missing_variables(files: list[Path], service_options: RunOptions, plan: ServicePlan) -> None:
    """Warn when the config only loads thanks to variables (``${VAR}``) the service will not be given."""
    from localagent.config import load_config
    from localagent.errors import ConfigError

    service_environ = dict(plan.environment)
    if "HOME" in os.environ:
        service_environ["HOME"] = os.environ["HOME"]
    try:
        load_config(files, service_options.to_flags(), service_environ)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(f"warning: in the service's environment: {problem}", err=True)
        typer.echo(
            "warning: set these variables for the service (supervisord passes on its own environment; "
            "systemd needs Environment= or EnvironmentFile= in a drop-in)",
            err=True,
        )
