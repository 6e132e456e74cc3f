"""The database schema (SQLAlchemy Core), created at start.

Times are stored as UTC epoch seconds (double precision) so that comparisons such as
``scheduled_start <= now`` are plain numeric ones on SQLite and PostgreSQL alike. JSON-ish columns
(parameters, labels, specs) are stored as text written by the stores.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = sa.MetaData()


class UtcTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored as UTC epoch seconds; naive datetimes are taken as UTC."""

    impl = sa.Double
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> float | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.timestamp()

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return datetime.fromtimestamp(float(value), tz=timezone.utc)


flows = sa.Table(
    "flows",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("created", UtcTime, nullable=False),
)

flow_runs = sa.Table(
    "flow_runs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("flow", sa.String(200), nullable=False),
    sa.Column("flow_version", sa.Integer, nullable=False),
    sa.Column("parameters", sa.Text, nullable=False),
    sa.Column("labels", sa.Text, nullable=False),
    sa.Column("run_config_type", sa.String(64), nullable=False),
    sa.Column("scheduled_start", UtcTime, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("state_message", sa.Text, nullable=False, default=""),
    sa.Column("attempt", sa.Integer, nullable=False, default=1),
    sa.Column("agent_id", sa.String(32)),
    sa.Column("agent_name", sa.String(200)),
    sa.Column("pid", sa.BigInteger),
    sa.Column("exit_code", sa.BigInteger),
    sa.Column("token_hash", sa.String(64)),
    # The token of the attempt replaced after its agent went silent: its late reports are still heard.
    sa.Column("lost_token_hash", sa.String(64)),
    sa.Column("submitted_at", UtcTime),
    sa.Column("created", UtcTime, nullable=False),
    sa.Column("updated", UtcTime, nullable=False),
    sa.Column("started", UtcTime),
    sa.Column("ended", UtcTime),
    # Set on runs a schedule made: the schedule's id and the fire time the run is for. The unique index
    # is what makes the scheduler exactly-once across server processes (NULLs, hand-made runs, never clash).
    sa.Column("schedule_id", sa.String(320)),
    sa.Column("nominal_time", UtcTime),
    sa.Index("ix_flow_runs_claimable", "state", "scheduled_start"),
    sa.Index("ux_flow_runs_schedule_time", "schedule_id", "nominal_time", unique=True),
    sa.Index("ix_flow_runs_agent", "agent_id", "state"),
    sa.Index("ix_flow_runs_token", "token_hash"),
    sa.Index("ix_flow_runs_lost_token", "lost_token_hash"),
    sa.Index("ix_flow_runs_created", "created"),
    sa.Index("ix_flow_runs_flow", "flow", "created"),
    sa.Index("ix_flow_runs_name", "name"),  # naming a run by its name (``run_refs``)
)

run_history = sa.Table(
    "run_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("time", UtcTime, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Index("ix_run_history_run", "run_id", "id"),
)

run_logs = sa.Table(
    "run_logs",
    metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("time", UtcTime, nullable=False),
    sa.Column("stream", sa.String(8), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    # Clustered on (run_id, seq) in new SQLite databases: one b-tree to write per line instead of two.
    sqlite_with_rowid=False,
)

agents = sa.Table(
    "agents",
    metadata,
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
    sa.Column("registered", UtcTime, nullable=False),
    sa.Column("last_heartbeat", UtcTime, nullable=False),
    sa.Column("max_concurrent_runs", sa.Integer),  # null: an agent that does not tell (older versions)
    sa.Column("stopped", UtcTime),  # when it said it stopped cleanly; null while it runs
    sa.Column("lost_policy", sa.Text),  # JSON LostPolicy; null: an agent that does not tell (counts as keep)
    sa.Index("ix_agents_heartbeat", "last_heartbeat"),
    sa.Index("ix_agents_identity", "name", "hostname"),
)

schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("id", sa.String(320), primary_key=True),  # "<flow>/<name>"
    sa.Column("flow", sa.String(200), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("flow_version", sa.Integer, nullable=False),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("paused", sa.Boolean, nullable=False, default=False),
    # overlap "allow": runs are made up to Scheduler.lead ahead of their fire time (no decision waits for it)
    sa.Column("ahead", sa.Boolean, nullable=False, default=False),
    sa.Column("next_time", UtcTime, nullable=False),  # the first fire time not handled yet
    sa.Column("last_time", UtcTime),  # the last fire time handled (a run made, skipped or dropped)
    sa.Column("queued_time", UtcTime),  # overlap "queue": the fire time waiting for the running run
    sa.Column("created", UtcTime, nullable=False),
    sa.Column("updated", UtcTime, nullable=False),
    sa.Index("ix_schedules_due", "paused", "next_time"),
    sa.Index("ix_schedules_ahead", "paused", "ahead", "next_time"),
    sa.Index("ix_schedules_flow", "flow", "name"),
)
