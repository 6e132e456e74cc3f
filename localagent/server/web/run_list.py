"""The runs list: filtered, newest first, in keyset pages that cost the same on page 1 and page 2,000.

Usage::

    page = read_run_page(database, RunFilter(state="Running"), cursor=None, limit=50)
    page.rows, page.older, page.newer     # rows to show; cursors for the links, None at either end

A cursor is ``<created epoch seconds>~<run id>``: the (created, id) of the row next to the page edge. The
query walks ``ix_flow_runs_created`` (or ``ix_flow_runs_flow`` with a flow filter) from that point, so it
never counts or skips rows the way an OFFSET does. Only the columns shown are read, without histories.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from localagent.api.models import StateName
from localagent.server.database import Database, load_json
from localagent.server.tables import agents, flow_runs

_COLUMNS = (
    flow_runs.c.id,
    flow_runs.c.name,
    flow_runs.c.flow,
    flow_runs.c.labels,
    flow_runs.c.state,
    flow_runs.c.attempt,
    flow_runs.c.agent_name,
    flow_runs.c.exit_code,
    flow_runs.c.scheduled_start,
    flow_runs.c.created,
    flow_runs.c.started,
    flow_runs.c.ended,
    agents.c.hostname,
    # The raw epoch too: a cursor must hold the stored number exactly, not a value rounded through datetime.
    sa.type_coerce(flow_runs.c.created, sa.Double).label("created_epoch"),
)


@dataclass(frozen=True)
class RunFilter:
    state: str = ""
    flow: str = ""
    label: str = ""
    agent: str = ""

    @property
    def active(self) -> bool:
        return bool(self.state or self.flow or self.label or self.agent)

    def query(self) -> dict[str, str]:
        """The filter as URL query parameters (empty ones left out)."""
        return {key: value for key, value in vars(self).items() if value}


@dataclass(frozen=True)
class RunRow:
    id: str
    name: str
    flow: str
    labels: list[str]
    state: str
    attempt: int
    agent_name: str | None
    hostname: str | None
    exit_code: int | None
    scheduled_start: datetime
    created: datetime
    started: datetime | None
    ended: datetime | None
    created_epoch: float

    @property
    def cursor(self) -> str:
        return f"{self.created_epoch!r}~{self.id}"


@dataclass(frozen=True)
class RunPage:
    rows: list[RunRow]
    older: str | None
    """cursor of the next page of older runs; None when this page reaches the oldest"""
    newer: str | None
    """cursor of the previous page of newer runs; None on the first page"""


class BadCursor(ValueError):
    """A ``before``/``after`` value that is not a cursor this module wrote."""


def decode_cursor(cursor: str) -> tuple[float, str]:
    stamp, sep, run_id = cursor.partition("~")
    try:
        value = float(stamp)
    except ValueError:
        value = float("nan")
    if not sep or not run_id or value != value or len(run_id) > 64:
        raise BadCursor(f"not a page cursor: {cursor[:80]!r}")
    return value, run_id


def read_run_page(
    database: Database, where: RunFilter, *, before: str | None = None, after: str | None = None, limit: int = 50
) -> RunPage:
    """Up to ``limit`` runs older than ``before`` (or newer than ``after``; the newest without either)."""
    query = sa.select(*_COLUMNS).select_from(flow_runs.outerjoin(agents, agents.c.id == flow_runs.c.agent_id))
    query = query.where(*_conditions(where))
    created = sa.type_coerce(flow_runs.c.created, sa.Double)
    if after is not None:
        stamp, run_id = decode_cursor(after)
        query = query.where(created >= stamp, sa.or_(created > stamp, flow_runs.c.id > run_id))
        query = query.order_by(flow_runs.c.created.asc(), flow_runs.c.id.asc())
    else:
        if before is not None:
            stamp, run_id = decode_cursor(before)
            query = query.where(created <= stamp, sa.or_(created < stamp, flow_runs.c.id < run_id))
        query = query.order_by(flow_runs.c.created.desc(), flow_runs.c.id.desc())
    with database.connect() as conn:
        found = conn.execute(query.limit(limit + 1)).all()
    more = len(found) > limit
    found = found[:limit]
    if after is not None:
        found.reverse()
    rows = [_row(row) for row in found]
    if not rows:
        return RunPage(rows=[], older=None, newer=None)
    first, last = rows[0], rows[-1]
    # Walking back (``before``) there are newer rows by construction; walking forward (``after``), older ones.
    has_older = more if after is None else True
    has_newer = before is not None if after is None else more
    return RunPage(
        rows=rows,
        older=last.cursor if has_older else None,
        newer=first.cursor if has_newer else None,
    )


def _conditions(where: RunFilter) -> list[Any]:
    conditions: list[Any] = []
    if where.state:
        conditions.append(flow_runs.c.state == where.state)
    if where.flow:
        conditions.append(flow_runs.c.flow == where.flow)
    if where.agent:
        conditions.append(sa.or_(flow_runs.c.agent_name == where.agent, flow_runs.c.agent_id == where.agent))
    if where.label:
        # Labels are stored as a JSON list: match the quoted element, with LIKE's wildcards escaped.
        element = json.dumps(where.label, ensure_ascii=False)
        pattern = "%" + element.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append(flow_runs.c.labels.like(pattern, escape="\\"))
    return conditions


def known_state(value: str) -> str:
    """The state filter as given, or '' for an unknown one (the form offers only real states)."""
    return value if value in {s.value for s in StateName} else ""


def _row(row: Any) -> RunRow:
    return RunRow(
        id=row.id,
        name=row.name,
        flow=row.flow,
        labels=load_json(row.labels),
        state=row.state,
        attempt=row.attempt,
        agent_name=row.agent_name,
        hostname=row.hostname,
        exit_code=row.exit_code,
        scheduled_start=row.scheduled_start,
        created=row.created,
        started=row.started,
        ended=row.ended,
        created_epoch=float(row.created_epoch),
    )
