"""``localagent server``: the orchestration API as a stand-alone service."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from localagent.errors import ConfigError, ServiceError

app = typer.Typer(
    help="Run the orchestration API server.",
    invoke_without_command=True,
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback(invoke_without_command=True)
def serve(
    address: Annotated[str, typer.Option("--address", help="HOST:PORT to listen on.")] = "127.0.0.1:4300",
    database: Annotated[
        str | None,
        typer.Option(
            "--database", help="SQLAlchemy URL; default: SQLite in the state dir. PostgreSQL: postgresql+psycopg://..."
        ),
    ] = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            help="Accept this Bearer key (repeatable). Also LOCALAGENT_SERVER_API_KEYS=k1,k2. "
            "Without any key the server only listens on loopback.",
        ),
    ] = None,
    agent_timeout: Annotated[
        str,
        typer.Option(
            "--agent-timeout", help="An agent silent this long is lost; its runs become Unknown (not Crashed)."
        ),
    ] = "60s",
    lost_timeout: Annotated[
        str,
        typer.Option(
            "--lost-timeout",
            help="A run Unknown this long (its agent never came back) becomes Crashed, retried only if its flow "
            "sets retry_lost; 'never' keeps it Unknown until its agent returns.",
        ),
    ] = "24h",
    db_pool_size: Annotated[
        int,
        typer.Option(
            "--db-pool-size",
            min=1,
            help="Database connections this process keeps open (PostgreSQL: plus 1 for LISTEN).",
        ),
    ] = 20,
    db_max_overflow: Annotated[
        int,
        typer.Option("--db-max-overflow", min=0, help="Extra connections opened under load beyond --db-pool-size."),
    ] = 20,
    prepared_statements: Annotated[
        bool,
        typer.Option(
            "--db-prepared-statements/--no-db-prepared-statements",
            help="PostgreSQL: let the driver prepare repeated statements (turn off behind a PgBouncer older "
            "than 1.21 in transaction pooling mode).",
        ),
    ] = True,
    listen: Annotated[
        bool,
        typer.Option(
            "--listen/--no-listen",
            help="PostgreSQL: wake long-polls on other server processes' changes with LISTEN/NOTIFY "
            "(--no-listen: re-check the database every second instead).",
        ),
    ] = True,
    listen_database: Annotated[
        str | None,
        typer.Option(
            "--listen-database",
            help="PostgreSQL URL for the one LISTEN connection when --database goes through a PgBouncer in "
            "transaction pooling mode (point it at PostgreSQL directly).",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
    upgrade_only: Annotated[
        bool,
        typer.Option("--upgrade-only", help="Bring the database schema to this version's head revision and exit."),
    ] = False,
    schema_revision: Annotated[
        bool,
        typer.Option("--schema-revision", help="Print the database's schema revision and this version's head; exit."),
    ] = False,
    export_openapi: Annotated[
        Path | None, typer.Option("--export-openapi", help="Write the OpenAPI document to this file and exit.")
    ] = None,
) -> None:
    """Serve the API until SIGTERM or SIGINT.

    Examples:

      localagent server

      localagent server --address 0.0.0.0:4300 --api-key "$KEY" --database postgresql+psycopg://u:p@db/la

      localagent server --upgrade-only --database postgresql+psycopg://u:p@db/la
    """
    if export_openapi is not None:
        from localagent.server.openapi import write_openapi

        write_openapi(export_openapi)
        typer.echo(f"wrote {export_openapi}")
        return

    from localagent.config.model import default_state_dir
    from localagent.config.units import parse_duration
    from localagent.server.file_modes import make_private_dir
    from localagent.server.runner import ServerThread
    from localagent.server.settings import api_keys_from_env

    try:
        timeout = parse_duration(agent_timeout)
    except ValueError as exc:
        raise ConfigError(f"--agent-timeout: {exc}") from exc
    if timeout <= 0:
        raise ConfigError("--agent-timeout: must be > 0")
    lost_after = _lost_timeout(lost_timeout)
    for index, key in enumerate(api_key or []):
        if not key.strip() or key != key.strip():
            raise ConfigError(
                f"--api-key (the {_ordinal(index + 1)} one): "
                + ("a blank key is not a key" if not key.strip() else "a key cannot start or end with whitespace")
                + "; pass a real secret, or no --api-key to serve on loopback only"
            )
    keys = tuple(dict.fromkeys([*(api_key or []), *api_keys_from_env()]))
    if database is None:
        state_dir = default_state_dir()
        try:
            make_private_dir(state_dir)
        except OSError as exc:
            raise ServiceError(f"cannot create the state dir {state_dir}: {exc.strerror or exc}") from exc
        database = f"sqlite:///{state_dir / 'localagent.db'}"
    if upgrade_only or schema_revision:
        _schema_command(database, upgrade=upgrade_only)
        return

    server = ServerThread(
        address=address,
        database_url=database,
        api_keys=keys,
        agent_timeout=timeout,
        lost_timeout=lost_after,
        listen=listen,
        listen_database_url=listen_database,
        db_pool_size=db_pool_size,
        db_max_overflow=db_max_overflow,
        db_prepared_statements=prepared_statements,
        log_level=log_level.lower(),
        access_log=log_level.lower() == "debug",
    )
    with _stop_on_signals() as stop:
        server.start()
        typer.echo(
            f"localagent API on {server.url} ({server.settings.database_url.split(':', 1)[0]}"
            f"{', API keys required' if keys else ', no API key: loopback only'})",
            err=True,
        )
        while not stop.wait(0.5):
            if not server.running:
                server.stop()
                raise ServiceError("the API server stopped unexpectedly; see the log above")
        typer.echo("stopping", err=True)
        server.stop()


def _ordinal(number: int) -> str:
    return {1: "first", 2: "second", 3: "third"}.get(number, f"{number}th")


def _schema_command(database_url: str, *, upgrade: bool) -> None:
    """``--upgrade-only`` / ``--schema-revision``: migrate (or only look) and say where the schema stands."""
    from localagent.server.database import Database
    from localagent.server.migrations.schema import current_revision, head_revision

    database = Database(database_url, migrate=upgrade)
    try:
        revision = current_revision(database)
    finally:
        database.dispose()
    head = head_revision()
    if revision == head:
        where = "head"
    elif revision is None:
        where = f"never migrated; head is {head}"
    else:
        where = f"head is {head}: run localagent server --upgrade-only"
    typer.echo(f"{database.url}: schema revision {revision or 'none'} ({where})")


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGTERM and SIGINT only set the event; the previous handlers come back afterwards."""
    stop = threading.Event()

    def _record(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, _record)
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _lost_timeout(value: str) -> float | None:
    """``--lost-timeout``: a duration > 0, or ``never`` (also ``0``) for no limit."""
    from localagent.config.units import parse_duration

    if value.strip().lower() in ("never", "0", "0s"):
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"--lost-timeout: {exc} (or 'never')") from exc
    if seconds <= 0:
        raise ConfigError("--lost-timeout: must be > 0, or 'never'")
    return seconds
