"""Flow-run rows to wire models: prepared reads of runs and their state histories.

Usage::

    runs = load_runs(conn, sa.select(flow_runs).where(flow_runs.c.state == "Running"))
    run = run_with_history(conn, row)        # a row already in hand (e.g. from RETURNING) + its history
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from localagent.api.models import FlowRun, StateName, StateRecord
from localagent.errors import ApiNotFound
from localagent.server.database import load_json
from localagent.server.tables import flow_runs, run_history

S = StateName
RUN_BY_ID = sa.select(flow_runs).where(flow_runs.c.id == sa.bindparam("run_id"))
_HISTORY_OF_ONE = (
    sa.select(run_history.c.state, run_history.c.time, run_history.c.message)
    .where(run_history.c.run_id == sa.bindparam("run_id"))
    .order_by(run_history.c.id)
)
_HISTORY_OF_MANY = (
    sa.select(run_history.c.run_id, run_history.c.state, run_history.c.time, run_history.c.message)
    .where(run_history.c.run_id.in_(sa.bindparam("run_ids", expanding=True)))
    .order_by(run_history.c.run_id, run_history.c.id)
)


def run_not_found(run_id: str) -> ApiNotFound:
    """The 404 of every endpoint that names a run the server does not have."""
    return ApiNotFound(404, f"flow run {run_id!r} not found")


def load_runs(conn: Connection, query: sa.Select[Any]) -> list[FlowRun]:
    """Run rows from ``query`` as wire models, each with its history (one extra query in all)."""
    return runs_with_history(conn, conn.execute(query).all())


def runs_with_history(conn: Connection, rows: Iterable[Any]) -> list[FlowRun]:
    """Rows already in hand as wire models, in the same order; their histories in one query."""
    rows = list(rows)
    if not rows:
        return []
    if len(rows) == 1:
        return [run_with_history(conn, rows[0])]
    history: dict[str, list[StateRecord]] = {row.id: [] for row in rows}
    for record in conn.execute(_HISTORY_OF_MANY, {"run_ids": list(history)}):
        history[record.run_id].append(StateRecord(state=record.state, time=record.time, message=record.message))
    return [run_model(row, history[row.id]) for row in rows]


_RUN_WITH_HISTORY = (
    sa.select(
        flow_runs,
        run_history.c.state.label("history_state"),
        run_history.c.time.label("history_time"),
        run_history.c.message.label("history_message"),
    )
    .select_from(flow_runs.outerjoin(run_history, run_history.c.run_id == flow_runs.c.id))
    .where(flow_runs.c.id == sa.bindparam("run_id"))
    .order_by(run_history.c.id)
)


def read_run(conn: Connection, run_id: str) -> FlowRun | None:
    """One run with its history, read by ONE statement so the two always agree.

    Two statements would read two snapshots (SQLite outside a transaction, PostgreSQL in READ COMMITTED):
    a reader could see a state in the history but the run row from before it (no exit code yet).
    """
    rows = conn.execute(_RUN_WITH_HISTORY, {"run_id": run_id}).all()
    if not rows:
        return None
    history = [
        StateRecord(state=row.history_state, time=row.history_time, message=row.history_message)
        for row in rows
        if row.history_state is not None
    ]
    return run_model(rows[0], history)


def run_with_history(conn: Connection, row: Any) -> FlowRun:
    records = conn.execute(_HISTORY_OF_ONE, {"run_id": row.id})
    return run_model(row, [StateRecord(state=r.state, time=r.time, message=r.message) for r in records])


def run_model(row: Any, history: list[StateRecord]) -> FlowRun:
    return FlowRun(
        id=row.id,
        name=row.name,
        flow=row.flow,
        flow_version=row.flow_version,
        parameters=load_json(row.parameters),
        labels=load_json(row.labels),
        run_config_type=row.run_config_type,
        scheduled_start=row.scheduled_start,
        state=S(row.state),
        state_message=row.state_message,
        history=history,
        attempt=row.attempt,
        agent_id=row.agent_id,
        agent_name=row.agent_name,
        pid=row.pid,
        exit_code=row.exit_code,
        created=row.created,
        updated=row.updated,
        started=row.started,
        ended=row.ended,
        # Rows built in hand (a run just created by a person) have no schedule columns.
        schedule=getattr(row, "schedule_id", None),
        nominal_time=getattr(row, "nominal_time", None),
    )
