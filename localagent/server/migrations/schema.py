"""Bring a database to the head revision, or tell where it stands (see the package docstring).

Usage::

    upgrade(database)            # at server start, under the schema lock
    current_revision(database)   # "0002", or None for a database never migrated
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError

from localagent.errors import StorageError


class Database(Protocol):
    """What migrating needs of :class:`localagent.server.database.Database` (which calls :func:`upgrade`
    when it opens a database, so this module names the shape rather than importing it back)."""

    backend: str

    def connect(self) -> AbstractContextManager[sa.Connection]: ...

    def begin(self) -> AbstractContextManager[sa.Connection]: ...

    def serialize(self, conn: sa.Connection, name: str) -> None: ...


_HERE = Path(__file__).resolve().parent
VERSION_TABLE = "alembic_version"
log = logging.getLogger(__name__)


def _config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this version of localagent knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise StorageError("no schema revisions are installed with localagent")
    return head


def current_revision(database: Database) -> str | None:
    """The revision ``database`` is at; None when it was never migrated (empty, or made before migrations)."""
    with database.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(database: Database) -> str:
    """Apply every revision ``database`` lacks, under the schema lock; returns the revision it is at."""
    with database.begin() as conn:
        if database.backend == "sqlite":
            # One writer from here to the commit: two servers opening one new file wait for each other, and
            # the revisions' DDL and copies commit or roll back together.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        database.serialize(conn, "schema")
        before = MigrationContext.configure(conn).get_current_revision()
        if before is None:
            _check_unversioned(conn)
        try:
            command.upgrade(_config(conn), "head")
        except CommandError as exc:
            raise StorageError(
                f"cannot upgrade the database schema at revision {before}: {exc} "
                "(a database written by a newer localagent? upgrade localagent)"
            ) from exc
        after = MigrationContext.configure(conn).get_current_revision()
    if after != before:
        log.info("database schema upgraded from %s to %s", before or "nothing", after)
    return after or ""


def _check_unversioned(conn: sa.Connection) -> None:
    """A database without a version table: empty, or made by a server from before migrations, whose tables
    must have (at least) the baseline's columns; anything else is not ours to change."""
    from localagent.server.migrations import baseline

    inspector = sa.inspect(conn)
    present = set(inspector.get_table_names())
    for table in baseline.BASELINE.sorted_tables:
        if table.name not in present:
            continue
        have = {column["name"] for column in inspector.get_columns(table.name)}
        missing = sorted(column.name for column in table.columns if column.name not in have)
        if missing:
            raise StorageError(
                f"the database has a table {table.name!r} without the columns {', '.join(missing)}: it was not "
                "made by localagent; use an empty database"
            )
    if present & set(baseline.BASELINE.tables):
        log.info("database made before schema migrations: upgrading it in place")
