"""Schedules: the ``schedules`` table, and on ``flow_runs`` the schedule and fire time of a scheduled run.

Revision ID: 0003
Revises: 0002

``flow_runs`` gains two nullable columns (existing runs were made by hand: both stay NULL) and the unique
index on ``(schedule_id, nominal_time)`` that makes the scheduler exactly-once; NULLs never clash in a
unique index on SQLite or PostgreSQL, so the rows already there satisfy it. Adding nullable columns is an
in-place ALTER on both databases: no table is copied.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_time = sa.Double  # tables.UtcTime's storage type: epoch seconds


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(320), primary_key=True),
        sa.Column("flow", sa.String(200), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("flow_version", sa.Integer, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("ahead", sa.Boolean, nullable=False),
        sa.Column("next_time", _time, nullable=False),
        sa.Column("last_time", _time),
        sa.Column("queued_time", _time),
        sa.Column("created", _time, nullable=False),
        sa.Column("updated", _time, nullable=False),
    )
    op.create_index("ix_schedules_due", "schedules", ["paused", "next_time"])
    op.create_index("ix_schedules_ahead", "schedules", ["paused", "ahead", "next_time"])
    op.create_index("ix_schedules_flow", "schedules", ["flow", "name"])
    op.add_column("flow_runs", sa.Column("schedule_id", sa.String(320)))
    op.add_column("flow_runs", sa.Column("nominal_time", _time))
    op.create_index("ux_flow_runs_schedule_time", "flow_runs", ["schedule_id", "nominal_time"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_flow_runs_schedule_time", table_name="flow_runs")
    with op.batch_alter_table("flow_runs") as batch:
        batch.drop_column("nominal_time")
        batch.drop_column("schedule_id")
    op.drop_index("ix_schedules_flow", table_name="schedules")
    op.drop_index("ix_schedules_ahead", table_name="schedules")
    op.drop_index("ix_schedules_due", table_name="schedules")
    op.drop_table("schedules")
