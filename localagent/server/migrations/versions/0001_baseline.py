"""Baseline: the five tables as the server created them with ``create_all`` before it had migrations.

Revision ID: 0001
Revises: none

The tables are written out, frozen, in ``baseline.py`` rather than imported from ``tables.py``: that module moves on
with later revisions, this one must always create the same thing. ``checkfirst`` keeps a database made by
a server from before migrations (``schema.upgrade`` checks its columns first) as it is: only tables it
lacks are created, exactly what ``create_all`` did at every start.
"""

from __future__ import annotations

from alembic import op

from localagent.server.migrations.baseline import BASELINE

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    BASELINE.create_all(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    BASELINE.drop_all(op.get_bind())
