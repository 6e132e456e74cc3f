"""Windows on a run's output, so a run with a million lines opens at once.

Usage::

    view = read_window(database, run_id, WindowRequest())            # first and last lines
    view = read_window(database, run_id, WindowRequest(line=5000))   # lines from seq 5000 on
    view = read_window(database, run_id, WindowRequest(search="error"))

Every read walks the ``(run_id, seq)`` primary key from one end or from a seq; only a search reads the run's
lines through, and it stops after ``SEARCH_LIMIT`` matches.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from localagent.server.database import Database
from localagent.server.tables import run_logs

HEAD = 100
"""lines shown at the start of the output"""
TAIL = 200
"""lines shown at its end (then followed live)"""
WINDOW = 300
"""lines shown from a jump target"""
LINE_CHARS = 4000
"""characters of one line shown on the page (the raw download has every line whole)"""
SEARCH_LIMIT = 200
DOWNLOAD_CHUNK = 5000

_LINE = (run_logs.c.seq, run_logs.c.stream, run_logs.c.text)
_OF_RUN = run_logs.c.run_id == sa.bindparam("run_id")


@dataclass(frozen=True)
class Line:
    seq: int
    stream: str
    text: str
    cut: int = 0
    """characters left out at the end of a very long line"""


@dataclass(frozen=True)
class WindowRequest:
    line: int | None = None
    search: str = ""


@dataclass(frozen=True)
class OutputView:
    head: list[Line] = field(default_factory=list)
    tail: list[Line] = field(default_factory=list)
    """shown after a gap of ``hidden`` lines (empty when the head holds everything)"""
    hidden: int = 0
    last_seq: int = -1
    mode: str = "edges"
    """``edges`` (first and last lines, followed live), ``jump`` or ``search``"""
    more_after: bool = False


def read_window(database: Database, run_id: str, request: WindowRequest) -> OutputView:
    with database.connect() as conn:
        last_seq = conn.execute(sa.select(sa.func.max(run_logs.c.seq)).where(_OF_RUN), {"run_id": run_id}).scalar()
        last = -1 if last_seq is None else int(last_seq)
        if request.search:
            pattern = "%" + request.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            query = (
                sa.select(*_LINE)
                .where(_OF_RUN, run_logs.c.text.like(pattern, escape="\\"))
                .order_by(run_logs.c.seq)
                .limit(SEARCH_LIMIT + 1)
            )
            found = _lines(conn.execute(query, {"run_id": run_id}).all())
            return OutputView(
                head=found[:SEARCH_LIMIT], last_seq=last, mode="search", more_after=len(found) > SEARCH_LIMIT
            )
        if request.line is not None:
            query = (
                sa.select(*_LINE)
                .where(_OF_RUN, run_logs.c.seq >= request.line)
                .order_by(run_logs.c.seq)
                .limit(WINDOW + 1)
            )
            found = _lines(conn.execute(query, {"run_id": run_id}).all())
            return OutputView(head=found[:WINDOW], last_seq=last, mode="jump", more_after=len(found) > WINDOW)
        head_query = sa.select(*_LINE).where(_OF_RUN).order_by(run_logs.c.seq).limit(HEAD)
        head = _lines(conn.execute(head_query, {"run_id": run_id}).all())
        if not head or head[-1].seq >= last:
            return OutputView(head=head, last_seq=last)
        tail_query = (
            sa.select(*_LINE).where(_OF_RUN, run_logs.c.seq > head[-1].seq).order_by(run_logs.c.seq.desc()).limit(TAIL)
        )
        tail = _lines(reversed(conn.execute(tail_query, {"run_id": run_id}).all()))
        # A run's seqs are consecutive (the agent numbers every line), so the gap is a subtraction, not a count.
        return OutputView(head=head, tail=tail, hidden=tail[0].seq - head[-1].seq - 1, last_seq=last)


def raw_output(database: Database, run_id: str) -> Iterator[str]:
    """All of a run's output as text, one line per stored line, read in chunks (never all in memory)."""
    after = -1
    query = (
        sa.select(*_LINE)
        .where(_OF_RUN, run_logs.c.seq > sa.bindparam("after"))
        .order_by(run_logs.c.seq)
        .limit(DOWNLOAD_CHUNK)
    )
    while True:
        with database.connect() as conn:
            rows = conn.execute(query, {"run_id": run_id, "after": after}).all()
        if not rows:
            return
        yield "".join(f"{row[2]}\n" for row in rows)
        after = int(rows[-1][0])


def _lines(rows: Sequence[Any] | Iterator[Any]) -> list[Line]:
    return [_line(int(row[0]), str(row[1]), str(row[2])) for row in rows]


def _line(seq: int, stream: str, text: str) -> Line:
    if len(text) <= LINE_CHARS:
        return Line(seq, stream, text)
    return Line(seq, stream, text[:LINE_CHARS], cut=len(text) - LINE_CHARS)
