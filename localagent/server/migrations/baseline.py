"""The schema of revision 0001, frozen: the five tables as servers before migrations created them.

Revision 0001 creates these, and ``schema.upgrade`` checks a database made before migrations against them.
Never edit this file: later changes are later revisions.
"""

from __future__ import annotations

import sqlalchemy as sa

BASELINE = sa.MetaData()
# Times are epoch seconds in a double (tables.UtcTime's storage type).
_time = sa.Double

sa.Table(
    "flows",
    BASELINE,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("created", _time, nullable=False),
)
sa.Table(
    "flow_runs",
    BASELINE,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("flow", sa.String(200), nullable=False),
    sa.Column("flow_version", sa.Integer, nullable=False),
    sa.Column("parameters", sa.Text, nullable=False),
    sa.Column("labels", sa.Text, nullable=False),
    sa.Column("run_config_type", sa.String(64), nullable=False),
    sa.Column("scheduled_start", _time, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("state_message", sa.Text, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("agent_id", sa.String(32)),
    sa.Column("agent_name", sa.String(200)),
    sa.Column("pid", sa.BigInteger),
    sa.Column("exit_code", sa.BigInteger),
    sa.Column("token_hash", sa.String(64)),
    sa.Column("submitted_at", _time),
    sa.Column("created", _time, nullable=False),
    sa.Column("updated", _time, nullable=False),
    sa.Column("started", _time),
    sa.Column("ended", _time),
    sa.Index("ix_flow_runs_claimable", "state", "scheduled_start"),
    sa.Index("ix_flow_runs_agent", "agent_id", "state"),
    sa.Index("ix_flow_runs_token", "token_hash"),
    sa.Index("ix_flow_runs_created", "created"),
    sa.Index("ix_flow_runs_flow", "flow", "created"),
)
sa.Table(
    "run_history",
    BASELINE,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("time", _time, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Index("ix_run_history_run", "run_id", "id"),
)
sa.Table(
    "run_logs",
    BASELINE,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("time", _time, nullable=False),
    sa.Column("stream", sa.String(8), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sqlite_with_rowid=False,
)
sa.Table(
    "agents",
    BASELINE,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("labels", sa.Text, nullable=False),
    sa.Column("run_unlabeled", sa.Boolean, nullable=False),
    sa.Column("run_config_types", sa.Text, nullable=False),
    sa.Column("hostname", sa.Text, nullable=False),
    sa.Column("version", sa.Text, nullable=False),
    sa.Column("config_generation", sa.BigInteger, nullable=False),
    sa.Column("config_hash", sa.Text, nullable=False),
    sa.Column("config_error", sa.Text),
    sa.Column("running_runs", sa.Text, nullable=False),
    sa.Column("registered", _time, nullable=False),
    sa.Column("last_heartbeat", _time, nullable=False),
    sa.Index("ix_agents_heartbeat", "last_heartbeat"),
)
