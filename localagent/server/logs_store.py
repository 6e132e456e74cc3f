"""Run output: numbered lines stored once per ``(run, seq)`` and read after a cursor.

Usage::

    result = logs.append(run_id, lines)            # one insert; a resent seq is ignored
    page = logs.read(run_id, after=-1, limit=1000)
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from localagent.api.models import LogBatchResult, LogLine, LogPage, StateName
from localagent.errors import ApiNotFound
from localagent.server.database import Database
from localagent.server.notify import Notifier, logs_topic
from localagent.server.tables import flow_runs, run_logs


class LogStore:
    """Append and read run output."""

    def __init__(self, database: Database, notifier: Notifier) -> None:
        self._db = database
        self._notifier = notifier
        # PostgreSQL text cannot hold NUL; a program printing one must not lose its whole batch.
        self._nul_free = database.backend == "postgresql"

    def append(self, run_id: str, lines: Sequence[LogLine]) -> LogBatchResult:
        rows = [
            {"run_id": run_id, "seq": line.seq, "time": line.time, "stream": line.stream, "text": self._text(line)}
            for line in lines
        ]
        with self._db.begin() as conn:
            _require_run(conn, run_id)
            stored = self._db.insert_ignoring_duplicates(conn, run_logs, rows)
            last_seq = last_log_seq(conn, run_id)
        if stored:
            self._notifier.notify(logs_topic(run_id))
        return LogBatchResult(stored=stored, last_seq=last_seq)

    def _text(self, line: LogLine) -> str:
        if self._nul_free and "\x00" in line.text:
            return line.text.replace("\x00", "\ufffd")
        return line.text

    def read(self, run_id: str, *, after: int, limit: int) -> LogPage:
        with self._db.connect() as conn:
            # The state is read before the lines: if it is final here, every line shipped before the
            # final report is already stored, so ``finished`` never cuts a follower short.
            state = _require_run(conn, run_id)
            rows = conn.execute(
                sa.select(run_logs)
                .where(run_logs.c.run_id == run_id, run_logs.c.seq > after)
                .order_by(run_logs.c.seq)
                .limit(limit + 1)
            ).all()
        more = len(rows) > limit
        rows = rows[:limit]
        lines = [LogLine(seq=row.seq, time=row.time, stream=row.stream, text=row.text) for row in rows]
        next_after = lines[-1].seq if lines else after
        return LogPage(lines=lines, next_after=next_after, finished=state.is_final and not more)


def last_log_seq(conn: Connection, run_id: str) -> int:
    """The highest stored seq of a run, -1 when none."""
    value = conn.execute(sa.select(sa.func.max(run_logs.c.seq)).where(run_logs.c.run_id == run_id)).scalar()
    return -1 if value is None else int(value)


def _require_run(conn: Connection, run_id: str) -> StateName:
    state = conn.execute(sa.select(flow_runs.c.state).where(flow_runs.c.id == run_id)).scalar()
    if state is None:
        raise ApiNotFound(404, f"flow run {run_id!r} not found")
    return StateName(state)
