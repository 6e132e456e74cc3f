"""Schema migrations on SQLite and PostgreSQL: head equals ``tables.py``; a database made by a server from
before migrations (its tables, no version table), filled, is upgraded in place with every row intact.

The PostgreSQL cases are skipped unless ``LOCALAGENT_TEST_POSTGRES_URL`` is set.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.pool import NullPool

from localagent.errors import StorageError
from localagent.server.database import Database
from localagent.server.migrations import baseline
from localagent.server.migrations.schema import _config, current_revision, head_revision
from localagent.server.runner import ServerThread
from localagent.server.tables import metadata
from tests.pg.support import pg_database, pg_url, sqlite_or_pg_url

__all__ = ["pg_database", "pg_url", "sqlite_or_pg_url"]  # fixtures used by name below

# The tables of commit 2c5ef58 (the first with these five tables), as `git show 2c5ef58:localagent/server/
# tables.py` defines them; UtcTime written as its storage type. Its run_logs is a rowid table.
OLD = sa.MetaData()
_t = sa.Double
sa.Table(
    "flows", OLD,
    sa.Column("name", sa.String(200), primary_key=True), sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("spec", sa.Text, nullable=False), sa.Column("created", _t, nullable=False),
)  # fmt: skip
sa.Table(
    "flow_runs", OLD,
    sa.Column("id", sa.String(32), primary_key=True), sa.Column("name", sa.String(200), nullable=False),
    sa.Column("flow", sa.String(200), nullable=False), sa.Column("flow_version", sa.Integer, nullable=False),
    sa.Column("parameters", sa.Text, nullable=False), sa.Column("labels", sa.Text, nullable=False),
    sa.Column("run_config_type", sa.String(64), nullable=False), sa.Column("scheduled_start", _t, nullable=False),
    sa.Column("state", sa.String(16), nullable=False), sa.Column("state_message", sa.Text, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False), sa.Column("agent_id", sa.String(32)),
    sa.Column("agent_name", sa.String(200)), sa.Column("pid", sa.BigInteger), sa.Column("exit_code", sa.BigInteger),
    sa.Column("token_hash", sa.String(64)), sa.Column("submitted_at", _t), sa.Column("created", _t, nullable=False),
    sa.Column("updated", _t, nullable=False), sa.Column("started", _t), sa.Column("ended", _t),
    sa.Index("ix_flow_runs_claimable", "state", "scheduled_start"), sa.Index("ix_flow_runs_agent", "agent_id", "state"),
    sa.Index("ix_flow_runs_token", "token_hash"), sa.Index("ix_flow_runs_created", "created"),
    sa.Index("ix_flow_runs_flow", "flow", "created"),
)  # fmt: skip
sa.Table(
    "run_history", OLD,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False), sa.Column("time", _t, nullable=False),
    sa.Column("message", sa.Text, nullable=False), sa.Index("ix_run_history_run", "run_id", "id"),
)  # fmt: skip
sa.Table(
    "run_logs", OLD,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("time", _t, nullable=False), sa.Column("stream", sa.String(8), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
)  # fmt: skip
sa.Table(
    "agents", OLD,
    sa.Column("id", sa.String(32), primary_key=True), sa.Column("name", sa.String(200), nullable=False),
    sa.Column("labels", sa.Text, nullable=False), sa.Column("run_unlabeled", sa.Boolean, nullable=False),
    sa.Column("run_config_types", sa.Text, nullable=False), sa.Column("hostname", sa.Text, nullable=False),
    sa.Column("version", sa.Text, nullable=False), sa.Column("config_generation", sa.BigInteger, nullable=False),
    sa.Column("config_hash", sa.Text, nullable=False), sa.Column("config_error", sa.Text),
    sa.Column("running_runs", sa.Text, nullable=False), sa.Column("registered", _t, nullable=False),
    sa.Column("last_heartbeat", _t, nullable=False), sa.Index("ix_agents_heartbeat", "last_heartbeat"),
)  # fmt: skip

SPEC = (
    '{"command":"echo hi","labels":[],"name":"etl","parameters":{},"retries":0,"retry_delay":0.0,'
    '"run_config":{"env":{},"labels":[],"type":"universal","working_dir":null},"timeout":null}'
)
ROWS: dict[str, list[dict[str, object]]] = {
    "flows": [
        {"name": "etl", "version": 1, "spec": SPEC, "created": 1_700_000_000.25},
        {"name": "etl", "version": 2, "spec": SPEC.replace("echo hi", "echo ho"), "created": 1_700_000_100.5},
    ],
    "flow_runs": [
        {
            "id": f"{i:032x}",
            "name": f"run-{i}",
            "flow": "etl",
            "flow_version": 2,
            "parameters": f'{{"n":{i}}}',
            "labels": '["gpu"]',
            "run_config_type": "universal",
            "scheduled_start": 1_700_000_200.0 + i,
            "state": state,
            "state_message": "naïve ✓ message",
            "attempt": 1,
            "agent_id": agent,
            "agent_name": name,
            "pid": pid,
            "exit_code": code,
            "token_hash": token,
            "submitted_at": submitted,
            "created": 1_700_000_200.0,
            "updated": 1_700_000_300.0,
            "started": started,
            "ended": ended,
        }
        for i, (state, agent, name, pid, code, token, submitted, started, ended) in enumerate(
            [
                ("Scheduled", None, None, None, None, None, None, None, None),
                ("Running", "a" * 32, "box-1", 4242, None, "f" * 64, 1_700_000_210.0, 1_700_000_211.0, None),
                ("Success", "a" * 32, "box-1", 4243, 0, "e" * 64, 1_700_000_220.0, 1_700_000_221.0, 1_700_000_230.0),
                ("Failed", "a" * 32, "box-1", 4244, 2**40, "d" * 64, 1_700_000_220.0, 1_700_000_221.0, 1_700_000_231.0),
            ]
        )
    ],
    "run_history": [
        {"id": i + 1, "run_id": f"{1:032x}", "state": state, "time": 1_700_000_200.0 + i, "message": f"m{i}"}
        for i, state in enumerate(["Scheduled", "Submitted", "Submitted", "Running"])
    ],
    "run_logs": [
        {"run_id": f"{2:032x}", "seq": seq, "time": 1_700_000_221.0 + seq / 10, "stream": stream, "text": text}
        for seq, stream, text in [
            (1, "stdout", "first"),
            (2, "stderr", "ünïcode ✓"),
            (3, "stdout", ""),
            (2**40, "stdout", "big seq"),
        ]
    ],
    "agents": [
        {
            "id": "a" * 32,
            "name": "box-1",
            "labels": '["gpu"]',
            "run_unlabeled": True,
            "run_config_types": '["universal"]',
            "hostname": "box",
            "version": "0.1.0",
            "config_generation": 3,
            "config_hash": "abc",
            "config_error": None,
            "running_runs": f'["{1:032x}"]',
            "registered": 1_700_000_000.0,
            "last_heartbeat": 1_700_000_300.0,
        }
    ],
}


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"), poolclass=NullPool)


def _read_all(engine: sa.Engine, meta: sa.MetaData) -> dict[str, list[dict[str, object]]]:
    with engine.connect() as conn:
        return {
            name: [dict(row._mapping) for row in conn.execute(sa.select(table).order_by(*table.primary_key.columns))]
            for name, table in meta.tables.items()
        }


def test_head_is_the_schema_of_tables_py(sqlite_or_pg_url: str) -> None:
    database = Database(sqlite_or_pg_url)
    database.dispose()
    engine = _engine(sqlite_or_pg_url)
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
        tables = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert differences == [], "tables.py and the migrations differ: add a revision (migrations/__init__.py)"
    assert tables == {*metadata.tables, "alembic_version"}
    assert database.revision == head_revision()


def test_baseline_makes_exactly_what_create_all_made(tmp_path: Path) -> None:
    """SQLite keeps each table's and index's DDL text: revision 0001 (+0002, a no-op there) must match
    what the server created with ``create_all`` before it had migrations, statement for statement."""
    old = _engine(f"sqlite:///{tmp_path / 'create_all.db'}")
    baseline.BASELINE.create_all(old)  # tables.py has moved on since (revision 0003 on: schedules, then agent caps)
    new = _engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    with new.begin() as conn:
        command.upgrade(_config(conn), "0002")
    query = "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE tbl_name != 'alembic_version' ORDER BY name"
    with old.connect() as a, new.connect() as b:
        assert a.exec_driver_sql(query).all() == b.exec_driver_sql(query).all()


def test_database_of_an_old_commit_is_upgraded_with_every_row(sqlite_or_pg_url: str) -> None:
    engine = _engine(sqlite_or_pg_url)
    OLD.create_all(engine)
    with engine.begin() as conn:
        for name, rows in ROWS.items():
            conn.execute(OLD.tables[name].insert(), rows)
    expected = _read_all(engine, OLD)
    assert {name: len(rows) for name, rows in expected.items()} == {name: len(rows) for name, rows in ROWS.items()}

    database = Database(sqlite_or_pg_url)  # what every server start does
    database.dispose()
    assert database.revision == head_revision()
    assert current_revision(database) == head_revision()
    after = _read_all(engine, OLD)
    assert after == expected
    assert after["run_logs"] == sorted(ROWS["run_logs"], key=lambda r: (r["run_id"], r["seq"]))
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'run_logs'").scalar_one()
        assert "WITHOUT ROWID" in sql  # revision 0002 clustered the old rowid table
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    engine.dispose()

    # And the server reads them: the runs, a run's history and its output.
    with ServerThread(address="127.0.0.1:0", database_url=sqlite_or_pg_url) as server:
        runs = requests.get(server.url + "/api/flow_runs", timeout=10).json()
        assert sorted(run["name"] for run in runs) == ["run-0", "run-1", "run-2", "run-3"]
        run1 = requests.get(server.url + f"/api/flow_runs/{1:032x}", timeout=10).json()
        assert [h["message"] for h in run1["history"]] == ["m0", "m1", "m2", "m3"]
        logs = requests.get(server.url + f"/api/flow_runs/{2:032x}/logs", timeout=10).json()
        assert [line["text"] for line in logs["lines"]] == ["first", "ünïcode ✓", "", "big seq"]
        assert requests.get(server.url + "/api/flows/etl", timeout=10).json()["version"] == 2
        # revision 0004: the old agent row has no cap and did not stop cleanly (both left out while null)
        (agent,) = requests.get(server.url + "/api/agents", params={"all": "true"}, timeout=10).json()
        assert (agent["name"], agent["hostname"], agent["labels"]) == ("box-1", "box", ["gpu"])
        assert "stopped" not in agent and "max_concurrent_runs" not in agent
        assert "lost_policy" not in agent  # revision 0005: an agent that told no policy (counts as keep)
        assert requests.get(server.url + "/api/flow_runs/run-1", timeout=10).json()["id"] == f"{1:032x}"


def test_a_foreign_table_is_not_taken_over(sqlite_or_pg_url: str) -> None:
    engine = _engine(sqlite_or_pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE flows (name VARCHAR(10) PRIMARY KEY, colour TEXT)")
    engine.dispose()
    with pytest.raises(StorageError, match=r"table 'flows' without the columns created, spec, version"):
        Database(sqlite_or_pg_url)


def test_a_revision_from_a_newer_version_is_refused(sqlite_or_pg_url: str) -> None:
    Database(sqlite_or_pg_url).dispose()
    engine = _engine(sqlite_or_pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    engine.dispose()
    with pytest.raises(StorageError, match=r"at revision 9999.*newer localagent"):
        Database(sqlite_or_pg_url)


def test_upgrade_only_and_schema_revision_commands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = _engine(url)
    OLD.create_all(engine)
    with engine.begin() as conn:
        conn.execute(OLD.tables["flows"].insert(), ROWS["flows"])
    engine.dispose()

    def server(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "localagent.cli.main", "server", "--database", url, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    head = head_revision()
    look = server("--schema-revision")
    assert (look.returncode, look.stdout.strip()) == (
        0,
        f"{url}: schema revision none (never migrated; head is {head})",
    )
    done = server("--upgrade-only")
    assert (done.returncode, done.stdout.strip()) == (0, f"{url}: schema revision {head} (head)")
    assert "Traceback" not in done.stderr
    assert server("--schema-revision").stdout.strip() == f"{url}: schema revision {head} (head)"
    assert len(_read_all(_engine(url), OLD)["flows"]) == 2
