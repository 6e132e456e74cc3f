"""``Database.snapshot()``: every statement of a multi-statement read sees the same moment."""

from __future__ import annotations

from pathlib import Path

import pytest

from localagent.server.database import Database
from tests.pg.support import pg_database, pg_url, requires_postgres

__all__ = ["pg_database", "pg_url"]  # fixtures used by name below


def _count(conn: object) -> int:
    return int(conn.exec_driver_sql("SELECT count(*) FROM snap").scalar())  # type: ignore[attr-defined]


def _check_snapshot(db: Database) -> None:
    with db.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE snap (x INTEGER)")
        conn.exec_driver_sql("INSERT INTO snap VALUES (1)")
    with db.snapshot() as reader:
        before = _count(reader)
        with db.begin() as writer:
            writer.exec_driver_sql("INSERT INTO snap VALUES (2)")
        assert _count(reader) == before == 1  # the write committed meanwhile is not seen
    with db.connect() as fresh:
        assert _count(fresh) == 2  # and the snapshot left nothing open behind it
    with db.connect() as plain:
        first = _count(plain)
        with db.begin() as writer:
            writer.exec_driver_sql("INSERT INTO snap VALUES (3)")
        assert (first, _count(plain)) == (2, 3)  # what a read without a snapshot can see (a torn read)


def test_snapshot_on_sqlite(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'snap.db'}")
    try:
        _check_snapshot(db)
    finally:
        db.dispose()


@requires_postgres
def test_snapshot_on_postgresql(pg_url: str) -> None:
    db = Database(pg_url)
    try:
        _check_snapshot(db)
    finally:
        db.dispose()


def test_list_runs_reads_in_a_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from localagent.api.models import FlowRunCreate, FlowSpec
    from localagent.server.services import Services
    from localagent.server.settings import ServerSettings

    svc = Services.build(ServerSettings(database_url=f"sqlite:///{tmp_path / 'api.db'}"))
    try:
        svc.flows.register(FlowSpec(name="f", command=["true"]))
        svc.runs.create(FlowRunCreate(flow="f"))
        used: list[str] = []
        snapshot = svc.database.snapshot
        monkeypatch.setattr(svc.database, "snapshot", lambda: used.append("snapshot") or snapshot())
        assert [run.state.value for run in svc.runs.list_runs()] == ["Scheduled"]
        assert used == ["snapshot"]
    finally:
        svc.database.dispose()
