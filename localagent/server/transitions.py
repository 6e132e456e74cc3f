"""The state machine of a flow run, applied with compare-and-set so concurrent writers never both win.

Usage::

    check_transition(run_id, StateName.RUNNING, StateName.SUCCESS)    # raises ApiConflict when illegal
    moved = apply_transition(conn, row, StateName.FAILED, "process exited with code 3", now, flows)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from localagent.api.models import StateName
from localagent.config.units import format_duration
from localagent.errors import ApiConflict
from localagent.server.flows_store import FlowStore
from localagent.server.tables import flow_runs, run_history

S = StateName
ALLOWED: dict[StateName, frozenset[StateName]] = {
    S.SCHEDULED: frozenset({S.CANCELLED}),  # Submitted only through a claim
    S.SUBMITTED: frozenset({S.RUNNING, S.FAILED, S.CANCELLED, S.CRASHED, S.CANCELLING}),
    S.RUNNING: frozenset({S.SUCCESS, S.FAILED, S.CANCELLED, S.CRASHED, S.CANCELLING}),
    S.CANCELLING: frozenset({S.CANCELLED, S.SUCCESS, S.FAILED, S.CRASHED}),
    S.SUCCESS: frozenset(),
    S.FAILED: frozenset(),  # back to Scheduled only by the server, as a retry
    S.CANCELLED: frozenset(),
    S.CRASHED: frozenset(),
}
ACTIVE_STATES = (S.SUBMITTED.value, S.RUNNING.value, S.CANCELLING.value)
RETRYABLE = frozenset({S.FAILED, S.CRASHED})


def check_transition(run_id: str, current: StateName, new: StateName) -> None:
    """Raise ``ApiConflict`` (409) unless ``current -> new`` is allowed through the API."""
    if new in ALLOWED[current]:
        return
    if current.is_final:
        raise ApiConflict(409, f"flow run {run_id} is already {current.value}; it cannot become {new.value}")
    allowed = ", ".join(sorted(s.value for s in ALLOWED[current])) or "nothing"
    hint = " (runs become Submitted only through a claim)" if new is S.SUBMITTED else ""
    raise ApiConflict(
        409, f"flow run {run_id} is {current.value}; it cannot become {new.value}{hint} (allowed: {allowed})"
    )


def apply_transition(
    conn: Connection,
    row: Any,
    new: StateName,
    message: str,
    now: datetime,
    flow_store: FlowStore,
    *,
    values: dict[str, Any] | None = None,
    retry: bool = True,
) -> bool:
    """Move ``row`` to ``new`` if it is still in the state it was read in; record history; retry if due.

    Returns False when another writer changed the run first (nothing is written then).
    """
    changes: dict[str, Any] = {"state": new.value, "state_message": message, "updated": now, **(values or {})}
    if new is S.RUNNING and row.started is None:
        changes["started"] = now
    if new.is_final:
        changes["ended"] = now
    # The attempt is part of the compare: a stale row (read before a retry that another server process
    # committed and an agent already started) must not crash the new attempt just because its state matches.
    still_as_read = (flow_runs.c.id == row.id, flow_runs.c.state == row.state, flow_runs.c.attempt == row.attempt)
    result = conn.execute(sa.update(flow_runs).where(*still_as_read).values(**changes))
    if result.rowcount != 1:
        return False
    record_history(conn, row.id, new, now, message)
    if retry and new in RETRYABLE:
        _schedule_retry(conn, row, now, flow_store)
    return True


_INSERT_HISTORY = run_history.insert()


def record_history(conn: Connection, run_id: str, state: StateName, now: datetime, message: str) -> None:
    conn.execute(_INSERT_HISTORY, {"run_id": run_id, "state": state.value, "time": now, "message": message})


def record_histories(conn: Connection, run_ids: list[str], state: StateName, now: datetime, message: str) -> None:
    """The same transition of many runs, in one statement."""
    conn.execute(
        _INSERT_HISTORY,
        [{"run_id": run_id, "state": state.value, "time": now, "message": message} for run_id in run_ids],
    )


def _schedule_retry(conn: Connection, row: Any, now: datetime, flow_store: FlowStore) -> None:
    flow = flow_store.get(row.flow, row.flow_version)
    if row.attempt > flow.retries:
        return
    try:
        start = now + timedelta(seconds=flow.retry_delay)
    except OverflowError:
        start = datetime.max.replace(tzinfo=now.tzinfo)
    message = f"retry {row.attempt} of {flow.retries} in {format_duration(flow.retry_delay)}"
    conn.execute(
        sa.update(flow_runs)
        .where(flow_runs.c.id == row.id)
        .values(
            state=S.SCHEDULED.value,
            state_message=message,
            attempt=row.attempt + 1,
            scheduled_start=start,
            updated=now,
            agent_id=None,
            agent_name=None,
            pid=None,
            exit_code=None,
            token_hash=None,
            submitted_at=None,
            started=None,
            ended=None,
        )
    )
    record_history(conn, row.id, S.SCHEDULED, now, message)
