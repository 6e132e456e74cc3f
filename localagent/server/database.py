"""The engine: created once per app, SQLite tuned for concurrent use, database errors translated in one place.

Usage::

    database = Database("sqlite:////tmp/la.db")       # or "postgresql+psycopg://user:pw@host/db"
    with database.begin() as conn:
        conn.execute(...)

Opening a database brings its schema to the head revision (``localagent.server.migrations``). On
PostgreSQL several server processes may share one database: the migrations run under an advisory lock so
that processes starting together do not race on ``CREATE TABLE``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from localagent.errors import StorageError
from localagent.server.file_modes import prepare_sqlite_file

SQLITE_BUSY_TIMEOUT_MS = 15_000
_SQLITE_INSERT_LOGS = "INSERT OR IGNORE INTO run_logs (run_id, seq, time, stream, text) VALUES "
_SQLITE_LOG_PAGE = 1000
"""Rows per multi-row ``INSERT`` (5,000 parameters, well under SQLite's 32,766); faster than executemany."""
_PG_INSERT_LOGS = (
    "INSERT INTO run_logs (run_id, seq, time, stream, text) "
    "SELECT %s, s, t, st, tx FROM unnest(%s::bigint[], %s::float8[], %s::text[], %s::text[]) AS u(s, t, st, tx) "
    "ON CONFLICT DO NOTHING"
)


_UNREADABLE = re.compile("[\x00\ud800-\udfff]")


class InvalidData(StorageError):
    """The database rejected a value (out of range, not representable); the request was wrong."""


class Database:
    """One SQLAlchemy engine with the schema at head; ``begin()`` / ``connect()`` translate errors.

    ``migrate=False`` opens it as it is (to read its revision without changing it). ``pool_size`` connections
    stay open once used, ``max_overflow`` more are opened under load and closed when returned.
    ``prepared_statements=False`` (PostgreSQL) keeps psycopg from preparing statements (for PgBouncer).
    """

    def __init__(
        self,
        url: str,
        *,
        migrate: bool = True,
        pool_size: int = 20,
        max_overflow: int = 20,
        prepared_statements: bool = True,
    ) -> None:
        try:
            parsed = _with_default_driver(sa.make_url(url))
            self.backend = parsed.get_backend_name()
            if self.backend == "sqlite":
                self.engine = _sqlite_engine(parsed, pool_size, max_overflow)
            else:
                connect_args = {} if prepared_statements else {"prepare_threshold": None}
                self.engine = sa.create_engine(
                    parsed,
                    pool_size=pool_size,
                    max_overflow=max_overflow,
                    pool_pre_ping=True,
                    connect_args=connect_args,
                )
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise StorageError(f"cannot use database URL {_hide_password(url)!r}: {exc}") from exc
        self.url = parsed.render_as_string(hide_password=True)
        self.revision = self.upgrade_schema() if migrate else None

    @property
    def nul_free(self) -> bool:
        """Text columns cannot hold NUL characters (PostgreSQL): writers replace them with U+FFFD."""
        return self.backend == "postgresql"

    @staticmethod
    def without_nul(text: str) -> str:
        """``text`` as a ``nul_free`` database holds it: each NUL replaced with U+FFFD."""
        return text.replace("\x00", "\ufffd")

    @property
    def shared(self) -> bool:
        """Other server processes may write to this database too (PostgreSQL): their changes reach this
        process's long-polls only through ``pg_wakeups`` (else by re-checking now and then)."""
        return self.backend != "sqlite"

    def upgrade_schema(self) -> str:
        """Apply the schema revisions this database lacks; safe when several processes start at once.

        Under the ``schema`` lock: without it two processes can both see a table missing and both create it
        (a unique violation in pg_type); with it the second one finds the first one's revision.
        """
        from localagent.server.migrations import schema

        return schema.upgrade(self)

    def serialize(self, conn: Connection, name: str) -> None:
        """Make transactions that pass the same ``name`` run one at a time, across server processes.

        On PostgreSQL a transaction-scoped advisory lock (released at commit or rollback); SQLite already
        runs one writer at a time, so there it does nothing.
        """
        if self.backend == "postgresql":
            key = int.from_bytes(
                hashlib.blake2b(f"localagent:{name}".encode(), digest_size=8).digest(), "big", signed=True
            )
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))

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

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A connection whose reads all see one consistent state of the database (nothing is committed).

        For a read made of several statements (runs, then their histories): without it, a write committed
        between two statements shows in the second but not the first. SQLite: an explicit ``BEGIN`` starts
        a read transaction (WAL keeps its snapshot for later statements); PostgreSQL: ``REPEATABLE READ``.
        """
        with translate_errors(), self.engine.connect() as conn:
            if self.backend == "sqlite":
                conn.exec_driver_sql("BEGIN")
            elif self.backend == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            try:
                yield conn
            finally:
                conn.rollback()

    def insert_log_rows(self, conn: Connection, rows: Sequence[tuple[str, int, float, str, str]]) -> int:
        """Insert ``(run_id, seq, time, stream, text)`` rows into ``run_logs``, skipping a ``(run_id, seq)``
        already stored; returns exactly how many were new.

        Driver-level statements, one per batch (per 1,000 rows on SQLite): a multi-row ``INSERT OR IGNORE``
        on SQLite (its row count is the rows really inserted); on PostgreSQL one ``INSERT ... SELECT FROM unnest(arrays)
        ... ON CONFLICT DO NOTHING``, whose row count is exact even when two servers race on one batch.
        """
        if not rows:
            return 0
        if self.backend == "sqlite":
            stored = 0
            for start in range(0, len(rows), _SQLITE_LOG_PAGE):
                page = rows[start : start + _SQLITE_LOG_PAGE]
                values = ",".join(("(?,?,?,?,?)",) * len(page))
                flat = tuple(value for row in page for value in row)
                stored += max(conn.exec_driver_sql(_SQLITE_INSERT_LOGS + values, flat).rowcount, 0)
            return stored
        if self.backend == "postgresql":
            _run_ids, seqs, times, streams, texts = (list(column) for column in zip(*rows, strict=True))
            result = conn.exec_driver_sql(_PG_INSERT_LOGS, (rows[0][0], seqs, times, streams, texts))
            return max(result.rowcount, 0)
        raise StorageError(f"log storage is not supported on {self.backend}")

    def dispose(self) -> None:
        self.engine.dispose()


def _with_default_driver(url: sa.URL) -> sa.URL:
    """``postgresql://`` means psycopg 3 (the ``postgres`` extra), not SQLAlchemy's default psycopg2."""
    if url.drivername in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    return url


def _hide_password(url: str) -> str:
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _sqlite_engine(url: sa.URL, pool_size: int, max_overflow: int) -> Engine:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        raise StorageError("an in-memory SQLite database cannot be shared by the server's threads; use a file")
    if not database.startswith("file:"):
        prepare_sqlite_file(Path(database))
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=pool_size,
        max_overflow=max_overflow,
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
    """A JSON column's value. ``dump_json`` writes NUL and lone surrogates as ``\\uXXXX`` escapes; servers
    before ``localagent.api.text`` stored such values, which no response can carry (or which the models now
    refuse): read back, each of those characters is U+FFFD, so old rows never break a listing or a claim."""
    value = json.loads(text)
    if "\\u0000" in text or "\\ud" in text:
        return _readable(value)
    return value


def _readable(value: Any) -> Any:
    if isinstance(value, str):
        return _UNREADABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_UNREADABLE.sub("\ufffd", key): _readable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_readable(item) for item in value]
    return value
