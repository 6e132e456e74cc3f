"""Agents say when they stop and what their cap is; runs are found by name.

Revision ID: 0004
Revises: 0003

- ``agents.max_concurrent_runs`` (null: an agent that does not tell, as agents before this revision) and
  ``agents.stopped`` (epoch seconds; null while it runs): why a run waits (every matching agent full) and
  ``agent ls`` showing a cleanly stopped agent as stopped, not lost.
- ``ix_agents_identity (name, hostname)``: a restarted agent takes over its record of the same name and host.
- ``ix_flow_runs_name (name)``: naming a run by its name (``GET /api/flow_runs/{name}``) without a scan.

Existing rows keep their values; the new columns are null in them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN works on SQLite for nullable columns: no table rebuild, whatever the table's size.
    op.add_column("agents", sa.Column("max_concurrent_runs", sa.Integer(), nullable=True))
    op.add_column("agents", sa.Column("stopped", sa.Double(), nullable=True))
    op.create_index("ix_agents_identity", "agents", ["name", "hostname"])
    op.create_index("ix_flow_runs_name", "flow_runs", ["name"])


def downgrade() -> None:
    op.drop_index("ix_flow_runs_name", table_name="flow_runs")
    op.drop_index("ix_agents_identity", table_name="agents")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("stopped")
        batch.drop_column("max_concurrent_runs")
