"""SQLite: ``run_logs`` clustered on ``(run_id, seq)`` (``WITHOUT ROWID``) in databases made before that.

Revision ID: 0002
Revises: 0001

Servers before this change created ``run_logs`` as a rowid table, and the change reached only new SQLite
files; a rowid table writes two b-trees per log line instead of one. The table is copied into a clustered
one inside the migration's transaction. PostgreSQL has no such option: nothing to do there.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_CLUSTERED = """CREATE TABLE run_logs_clustered (
\trun_id VARCHAR(32) NOT NULL,
\tseq BIGINT NOT NULL,
\ttime DOUBLE NOT NULL,
\tstream VARCHAR(8) NOT NULL,
\ttext TEXT NOT NULL,
\tPRIMARY KEY (run_id, seq)
) WITHOUT ROWID"""


def _has_rowid(conn: sa.Connection) -> bool:
    sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'run_logs'").scalar()
    return sql is not None and "WITHOUT ROWID" not in sql.upper()


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "sqlite" or not _has_rowid(conn):
        return
    conn.exec_driver_sql("DROP TABLE IF EXISTS run_logs_clustered")
    conn.exec_driver_sql(_CLUSTERED)
    conn.exec_driver_sql(
        "INSERT INTO run_logs_clustered (run_id, seq, time, stream, text) "
        "SELECT run_id, seq, time, stream, text FROM run_logs"
    )
    conn.exec_driver_sql("DROP TABLE run_logs")
    conn.exec_driver_sql("ALTER TABLE run_logs_clustered RENAME TO run_logs")


def downgrade() -> None:
    """Nothing to undo: a clustered table holds the same rows and serves the same queries."""
