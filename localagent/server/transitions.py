"""The state machine of a flow run, applied with compare-and-set so concurrent writers never both win.

Usage::

    check_transition(run_id, StateName.RUNNING, StateName.SUCCESS)    # raises ApiConflict when illegal
    moved = apply_transition(conn, row, StateName.FAILED, "process exited with code 3", now, flows)
    row = conn.execute(MOVE_TO[StateName.RUNNING], move_params(run_id, "", now, pid=42)).first()

``MOVE_TO`` holds one prepared ``UPDATE ... WHERE state IN (<every state that may move there>) RETURNING``
per target state: the hot path of state reports is that one statement, with no read before it.
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
    # Entered only by the server (its agent went silent); left by the agent's late report or reconnection.
    S.UNKNOWN: frozenset({S.RUNNING, S.SUCCESS, S.FAILED, S.CANCELLED, S.CRASHED}),
}
ACTIVE_STATES = (S.SUBMITTED.value, S.RUNNING.value, S.CANCELLING.value)
"""Runs an agent is known to be running (Unknown ones are not: their agent is silent)."""
HELD_STATES = (*ACTIVE_STATES, S.UNKNOWN.value)
"""Runs an agent holds: the active ones and those it may still run without the server hearing it."""
RETRYABLE = frozenset({S.FAILED, S.CRASHED})
SOURCES: dict[StateName, tuple[StateName, ...]] = {
    new: tuple(state for state, targets in ALLOWED.items() if new in targets) for new in StateName
}
"""The states from which each state may be reached through the API."""


def _move_statement(new: StateName, *, slim: bool = False) -> sa.Update:
    sources: list[sa.ColumnElement[Any]] = [
        sa.literal_column(f"'{state.value}'") for state in SOURCES[new]
    ]  # enum values: safe to inline
    now = sa.bindparam("at", type_=flow_runs.c.updated.type)
    values: dict[str, Any] = {
        "state": new.value,
        "state_message": sa.bindparam("new_message", type_=sa.Text),
        "updated": now,
        "pid": sa.func.coalesce(sa.bindparam("new_pid", type_=sa.BigInteger), flow_runs.c.pid),
        "exit_code": sa.func.coalesce(sa.bindparam("new_exit_code", type_=sa.BigInteger), flow_runs.c.exit_code),
    }
    if new is S.RUNNING:
        values["started"] = sa.func.coalesce(flow_runs.c.started, now)
    if new.is_final:
        values["ended"] = now
    # A report naming its attempt applies only to that attempt (an older one is a late report: ``lost_runs``).
    for_attempt = sa.bindparam("for_attempt", type_=sa.Integer)
    attempt = flow_runs.c.attempt == sa.func.coalesce(for_attempt, flow_runs.c.attempt)
    return (
        sa.update(flow_runs)
        .where(flow_runs.c.id == sa.bindparam("run_id"), flow_runs.c.state.in_(sources), attempt)
        .values(values)
        .returning(*(SLIM_COLUMNS if slim else flow_runs.c))
    )


SLIM_COLUMNS = (flow_runs.c.id, flow_runs.c.state, flow_runs.c.attempt, flow_runs.c.flow, flow_runs.c.flow_version)
"""What a batched state report needs back (its result, and a retry): no times to convert, no JSON to parse."""

MOVE_TO: dict[StateName, sa.Update] = {new: _move_statement(new) for new in StateName if SOURCES[new]}
MOVE_TO_SLIM: dict[StateName, sa.Update] = {new: _move_statement(new, slim=True) for new in StateName if SOURCES[new]}


def move_params(
    run_id: str,
    message: str,
    now: datetime,
    *,
    pid: int | None = None,
    exit_code: int | None = None,
    attempt: int | None = None,
) -> dict[str, Any]:
    """The parameters of a ``MOVE_TO`` statement; ``pid``/``exit_code`` None keep the stored values, and
    ``attempt`` None applies the move to whatever attempt the run is at."""
    return {
        "run_id": run_id,
        "new_message": message,
        "at": now,
        "new_pid": pid,
        "new_exit_code": exit_code,
        "for_attempt": attempt,
    }


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
        schedule_retry(conn, row, now, flow_store)
    return True


_INSERT_HISTORY = run_history.insert()


def _history_row(run_id: str, state: StateName, now: datetime, message: str) -> dict[str, Any]:
    return {"run_id": run_id, "state": state.value, "time": now, "message": message}


def record_history(conn: Connection, run_id: str, state: StateName, now: datetime, message: str) -> None:
    conn.execute(_INSERT_HISTORY, _history_row(run_id, state, now, message))


class HistoryRows:
    """History records gathered while a batch of reports is applied, inserted in one ``executemany``.

    Flush before anything reads a run's history or adds to it directly (a retry), so the order holds.
    """

    def __init__(self) -> None:
        self._rows: list[dict[str, Any]] = []

    def add(self, run_id: str, state: StateName, now: datetime, message: str) -> None:
        self._rows.append(_history_row(run_id, state, now, message))

    def flush(self, conn: Connection) -> None:
        if self._rows:
            conn.execute(_INSERT_HISTORY, self._rows)
            self._rows = []


def record_histories(conn: Connection, run_ids: list[str], state: StateName, now: datetime, message: str) -> None:
    """The same transition of many runs, in one statement."""
    conn.execute(_INSERT_HISTORY, [_history_row(run_id, state, now, message) for run_id in run_ids])


def schedule_retry(conn: Connection, row: Any, now: datetime, flow_store: FlowStore) -> bool:
    """Put an ended ``row`` back to Scheduled (attempt + 1) if its flow has retries left; True if it did."""
    flow = flow_store.get(row.flow, row.flow_version)
    if row.attempt > flow.retries:
        return False
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
    return True
