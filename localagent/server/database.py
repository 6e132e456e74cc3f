"""The engine: created once per app, SQLite tuned for concurrent use, database errors translated in one place.

Usage::

    database = Database("sqlite:////tmp/la.db")
    with database.begin() as conn:
        conn.execute(...)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from localagent.errors import StorageError
from localagent.server.tables import metadata

SQLITE_BUSY_TIMEOUT_MS = 15_000


class InvalidData(StorageError):
    """The database rejected a value (out of range, not representable); the request was wrong."""


class Database:
    """One SQLAlchemy engine with the schema created; ``begin()`` / ``connect()`` translate errors."""

    def __init__(self, url: str) -> None:
        try:
            parsed = sa.make_url(url)
            self.backend = parsed.get_backend_name()
            if self.backend == "sqlite":
                self.engine = _sqlite_engine(parsed)
            else:
                self.engine = sa.create_engine(parsed, pool_size=20, max_overflow=20, pool_pre_ping=True)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise StorageError(f"cannot use database URL {url!r}: {exc}") from exc
        self.url = parsed.render_as_string(hide_password=True)
        with self.begin() as conn:
            metadata.create_all(conn)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection in a transaction, committed on success."""
        with translate_errors(), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reads (nothing is committed)."""
        with translate_errors(), self.engine.connect() as conn:
            yield conn

    def insert_ignoring_duplicates(self, table: sa.Table) -> Any:
        """``INSERT ... ON CONFLICT DO NOTHING`` for this backend (a resent row is stored once)."""
        if self.backend == "postgresql":
            return postgresql.insert(table).on_conflict_do_nothing()
        if self.backend == "sqlite":
            return sqlite.insert(table).on_conflict_do_nothing()
        raise StorageError(f"insert-ignore is not supported on {self.backend}")

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_engine(url: sa.URL) -> Engine:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        raise StorageError("an in-memory SQLite database cannot be shared by the server's threads; use a file")
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=20,
        max_overflow=20,
    )

    @event.listens_for(engine, "connect")
    def _tune(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn driver and SQLAlchemy errors into ``StorageError`` (``InvalidData`` for a bad value)."""
    try:
        yield
    except (OverflowError, sa.exc.DataError, sa.exc.IntegrityError) as exc:
        raise InvalidData(f"the database rejected a value: {_first_line(exc)}") from exc
    except DBAPIError as exc:
        raise StorageError(f"database error: {_first_line(exc.orig or exc)}") from exc
    except SQLAlchemyError as exc:
        raise StorageError(f"database error: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def dump_json(value: Any) -> str:
    """Compact JSON for a text column; NaN and infinities are refused as ``InvalidData``."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False, sort_keys=True)
    except (ValueError, TypeError) as exc:
        raise InvalidData(f"value cannot be stored as JSON: {exc}") from exc


def load_json(text: str) -> Any:
    return json.loads(text)
