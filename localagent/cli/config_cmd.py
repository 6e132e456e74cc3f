"""``localagent config validate|show|schema``: check, explain and describe agent configuration."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from localagent.cli.common import report_config_error
from localagent.cli.run_options import RunOptions, with_run_options

if TYPE_CHECKING:
    from localagent.config import LoadedConfig

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


@app.command("init")
@with_run_options
def init(
    options: RunOptions,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="Write to FILE (mode 0600) instead of printing."),
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file", metavar="FILE", help="Write the key given with --key to FILE (mode 0600) and refer to it."
        ),
    ] = None,
    key_var: Annotated[
        str,
        typer.Option("--key-var", metavar="NAME", help='Without --key-file: the file says key = "${NAME}".'),
    ] = "LOCALAGENT_API_KEY",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output or key file.")] = False,
) -> None:
    """Write the agent.toml that the given flags and LOCALAGENT_* variables describe.

    Takes every flag of `localagent run`. Only what was given is written, each key with its meaning and
    where it came from; the API key never is: it becomes key = "${LOCALAGENT_API_KEY}" (see --key-var) or,
    with --key-file, a mode-0600 key file. The result passes `localagent config validate`.

    Examples:

    \b
      localagent config init --api http://orchestrator:4300 --key "$KEY" --label etl --env DB=prod -o agent.toml
      LOCALAGENT_AGENT__POLL_INTERVAL=3s localagent config init --label gpu --key-file /etc/localagent/api.key
    """
    import re

    from localagent.config import load_config
    from localagent.config.init import KeyReference, init_toml
    from localagent.config.render import SECRET_ENV_NAME
    from localagent.errors import ConfigError, ConfigProblem
    from localagent.install.keys import existing_key, write_key_file

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key_var):
        raise typer.BadParameter(f"expected a variable name like LOCALAGENT_API_KEY, got {key_var!r}")
    environ = dict(os.environ)
    try:
        loaded = load_config(list(options.config), options.to_flags(), environ)
        api_key = loaded.config.api.key.get_secret_value() if loaded.config.api.key is not None else None
        target = key_file.expanduser().absolute() if key_file is not None and api_key is not None else None
        text = init_toml(loaded, KeyReference(variable=key_var, key_file=target))
        # The file must load to the same config (the key supplied as the service will supply it).
        check_environ = {**environ, key_var: api_key} if api_key is not None and target is None else environ
        _check_round_trip(text, loaded, check_environ, target, api_key)
        if output is not None and output.exists() and not force:
            raise ConfigError([ConfigProblem(str(output), "", "already exists: pass --force to replace it")])
        if target is not None and api_key is not None:
            current = existing_key(target)
            if target.exists() and current != api_key and not force:
                raise ConfigError(
                    [ConfigProblem(str(target), "api.key_file", "holds a different key: pass --force to replace it")]
                )
            if current != api_key:
                write_key_file(target, api_key)
            typer.echo(f"the API key is in {target} (mode 0600); the file refers to it", err=True)
        elif api_key is not None:
            typer.echo(f"the API key is not written: the file says key = \"${{{key_var}}}\"; set {key_var} for "
                       "the agent, or pass --key-file FILE", err=True)  # fmt: skip
    except ConfigError as exc:
        report_config_error(exc, EXIT_INVALID)
    secrets = [name for name in loaded.config.runs.env if SECRET_ENV_NAME.search(name)]
    if secrets:
        typer.echo(f"warning: runs.env holds secret-looking values in clear text: {', '.join(secrets)}", err=True)
    if output is None:
        typer.echo(text, nl=False)
        return
    _write_private(output, text)
    typer.echo(f"wrote {output} (mode 0600); check it with: localagent config validate -c {output}", err=True)


def _check_round_trip(
    text: str, loaded: LoadedConfig, environ: dict[str, str], key_file: Path | None, api_key: str | None
) -> None:
    """Load ``text`` as a file and compare with ``loaded``; a difference is a bug, reported as a config error."""
    import tempfile

    from localagent.config import load_config
    from localagent.errors import ConfigError, ConfigProblem

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory, "agent.toml")
        path.write_text(text, encoding="utf-8")
        if key_file is not None and api_key is not None:
            key_path = Path(directory, "api.key")
            key_path.write_text(api_key, encoding="utf-8")
            text = text.replace(str(key_file), str(key_path))
            path.write_text(text, encoding="utf-8")
        # Without the LOCALAGENT_<SECTION>__<KEY> variables: what they set must now be in the file.
        plain = {name: value for name, value in environ.items() if not _is_config_variable(name)}
        again = load_config([path], None, plain)
    mine = loaded.config.model_dump(mode="json", exclude={"agent": {"name", "state_dir"}, "api": {"key", "key_file"}})
    theirs = again.config.model_dump(mode="json", exclude={"agent": {"name", "state_dir"}, "api": {"key", "key_file"}})
    if mine != theirs or again.api_key != loaded.api_key:
        raise ConfigError([ConfigProblem("config init", "", "the written file would not load to the same config")])


def _is_config_variable(name: str) -> bool:
    from localagent.config.sources import ENV_PREFIX

    return name.startswith(ENV_PREFIX) and "__" in name[len(ENV_PREFIX) :]


def _write_private(path: Path, text: str) -> None:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            os.fchmod(stream.fileno(), 0o600)
            stream.write(text)
    except OSError as exc:
        typer.echo(f"Error: cannot write {path}: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_INVALID) from None
