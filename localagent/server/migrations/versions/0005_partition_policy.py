"""Partitions: an agent's policy for an unreachable API, and the token of a run's lost attempt.

Revision ID: 0005
Revises: 0004

- ``agents.lost_policy`` (JSON text; null: an agent that does not tell, which counts as ``keep``): what the
  agent does with its runs when it cannot reach the API, so the server knows when a silent agent has
  stopped them itself (``server/lost_runs.py``).
- ``flow_runs.lost_token_hash``: the token of an attempt that was replaced after its agent went silent; that
  agent's late state reports and output are still accepted (and recorded) with it.

Existing rows keep their values; the new columns are null in them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("agents", sa.Column("lost_policy", sa.Text(), nullable=True))
    op.add_column("flow_runs", sa.Column("lost_token_hash", sa.String(64), nullable=True))
    op.create_index("ix_flow_runs_lost_token", "flow_runs", ["lost_token_hash"])


def downgrade() -> None:
    op.drop_index("ix_flow_runs_lost_token", table_name="flow_runs")
    with op.batch_alter_table("flow_runs") as batch:
        batch.drop_column("lost_token_hash")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("lost_policy")
