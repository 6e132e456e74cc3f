"""Run output: numbered lines stored once per ``(run, seq)`` and read after a cursor.

Usage::

    result = logs.append(run_id, rows)             # one insert; a resent seq is ignored
    page = logs.read(run_id, after=-1, limit=1000)

Rows are plain tuples (see ``log_wire``): a batch is validated once and inserted with one driver-level
statement, no per-row SQLAlchemy processing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from localagent.api.models import LogBatchResult, StateName
from localagent.errors import ApiConflict
from localagent.server.database import Database
from localagent.server.log_wire import LogRow
from localagent.server.notify import Notifier, logs_topic
from localagent.server.run_rows import run_not_found
from localagent.server.tables import flow_runs, run_logs

_RUN_STATE = sa.select(flow_runs.c.state).where(flow_runs.c.id == sa.bindparam("run_id"))
_LAST_SEQ = sa.select(sa.func.max(run_logs.c.seq)).where(run_logs.c.run_id == sa.bindparam("run_id"))
# Raw columns (no UtcTime processing): the page is rendered from epoch seconds by ``log_wire``.
_PAGE = (
    sa.select(run_logs.c.seq, sa.type_coerce(run_logs.c.time, sa.Double), run_logs.c.stream, run_logs.c.text)
    .where(run_logs.c.run_id == sa.bindparam("run_id"), run_logs.c.seq > sa.bindparam("after"))
    .order_by(run_logs.c.seq)
    .limit(sa.bindparam("limit"))
)


@dataclass(frozen=True)
class LogRows:
    """A page of lines as ``(seq, epoch seconds, stream, text)`` rows."""

    rows: Sequence[tuple[Any, ...]]
    next_after: int
    finished: bool


class LogStore:
    """Append and read run output."""

    def __init__(self, database: Database, notifier: Notifier) -> None:
        self._db = database
        self._notifier = notifier
        # PostgreSQL text cannot hold NUL; a program printing one must not lose its whole batch.
        self.nul_free = database.nul_free

    def append(self, run_id: str, rows: Sequence[LogRow], *, until_final: bool = False) -> LogBatchResult:
        """Store ``rows`` (a resent seq is skipped); ``stored`` counts exactly the new ones.

        ``until_final`` (a run token's batch): a run's output is *complete* once the run is in a final
        state, and such a batch is then refused (409). The agent ships a run's output before its final
        state, and output left over by a stopped agent goes with the agent's key, which is never refused;
        so only a process still holding the token after the end (a daemon it left) is turned away.
        """
        with self._db.begin() as conn:
            state = _require_run(conn, run_id)
            if until_final and state.is_final:
                raise ApiConflict(
                    409,
                    f"run {run_id} is {state.value}: its output is complete, and its run token cannot add to it",
                )
            stored = self._db.insert_log_rows(conn, rows)
            last_seq = last_log_seq(conn, run_id)
        if stored:
            self._notifier.notify(logs_topic(run_id))
        return LogBatchResult(stored=stored, last_seq=last_seq)

    def read(self, run_id: str, *, after: int, limit: int) -> LogRows:
        with self._db.connect() as conn:
            # The state is read before the lines: if it is final here, every line shipped before the
            # final report is already stored, so ``finished`` never cuts a follower short.
            state = _require_run(conn, run_id)
            rows = conn.execute(_PAGE, {"run_id": run_id, "after": after, "limit": limit + 1}).all()
        more = len(rows) > limit
        rows = rows[:limit]
        next_after = int(rows[-1][0]) if rows else after
        return LogRows(rows=rows, next_after=next_after, finished=state.is_final and not more)


def last_log_seq(conn: Connection, run_id: str) -> int:
    """The highest stored seq of a run, -1 when none."""
    value = conn.execute(_LAST_SEQ, {"run_id": run_id}).scalar()
    return -1 if value is None else int(value)


def _require_run(conn: Connection, run_id: str) -> StateName:
    state = conn.execute(_RUN_STATE, {"run_id": run_id}).scalar()
    if state is None:
        raise run_not_found(run_id)
    return StateName(state)
