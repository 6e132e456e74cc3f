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
    flow_runs.c.schedule_id,
    flow_runs.c.nominal_time,
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
    schedule: str | None = None
    """id of the schedule that made the run ('flow/name'), with its fire time ``nominal_time``"""
    nominal_time: datetime | None = None

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
    window_ended: bool = False
    """the filter's scan window ended before the page was full: ``older`` carries the search on"""


SCAN_WINDOW = 10_000
"""runs a page with a label, agent or final-state filter looks at, at most (see ``read_run_page``)"""
_FINAL = frozenset(state.value for state in StateName if state.is_final)


class BadCursor(ValueError):
    """A ``before``/``after`` value that is not a cursor this module wrote."""


def decode_cursor(cursor: str) -> tuple[float, str]:
    stamp, sep, run_id = cursor.partition("~")
    try:
        value = float(stamp)
    except ValueError:
        value = float("nan")
    if not sep or value != value or len(run_id) > 64:
        raise BadCursor(f"not a page cursor: {cursor[:80]!r}")
    return value, run_id


def read_run_page(
    database: Database,
    where: RunFilter,
    *,
    before: str | None = None,
    after: str | None = None,
    limit: int = 50,
    scan_window: int = SCAN_WINDOW,
) -> RunPage:
    """Up to ``limit`` runs older than ``before`` (or newer than ``after``; the newest without either).

    A filter no index serves (label, agent, a final state) looks at no more than ``scan_window`` runs from the
    cursor on: a rare label among 100,000 runs costs one bounded step per page, and the page's link
    carries the search on from where the window ended.
    """
    forward = after is not None
    given = after if forward else before
    cursor = decode_cursor(given) if given is not None else None
    query = sa.select(*_COLUMNS).select_from(flow_runs.outerjoin(agents, agents.c.id == flow_runs.c.agent_id))
    query = query.where(*_conditions(where))
    with database.connect() as conn:
        edge = None
        if where.label or where.agent or where.state in _FINAL:
            # ``created`` alone: answered from the index without reading a row. Ties at the edge's time
            # all fall inside the window, so the cursor that carries on needs only the time.
            window = sa.select(_CREATED)
            if cursor is not None:
                window = window.where(*_beyond(cursor, forward))
            order = flow_runs.c.created.asc() if forward else flow_runs.c.created.desc()
            edge = conn.execute(window.order_by(order).offset(scan_window).limit(1)).scalar()
        if edge is not None:
            query = query.where(edge >= _CREATED if forward else edge <= _CREATED)
        found = list(conn.execute(_walk(query, cursor, forward).limit(limit + 1)).all())
    more = len(found) > limit
    walk = [_row(row) for row in found[:limit]]
    if more:
        far: str | None = walk[-1].cursor
    elif edge is not None:
        # Past every run at the edge's time: "" sorts before and "~" after any run id.
        far = f"{float(edge)!r}~{'~' if forward else ''}"
    else:
        far = None
    near = walk[0].cursor if walk and cursor is not None else None
    if forward:
        return RunPage(rows=walk[::-1], older=near, newer=far, window_ended=edge is not None and not more)
    return RunPage(rows=walk, older=far, newer=near, window_ended=edge is not None and not more)


_CREATED = sa.type_coerce(flow_runs.c.created, sa.Double)
"""the raw epoch column: cursors compare the stored numbers"""


def _beyond(cursor: tuple[float, str], forward: bool) -> list[Any]:
    """Rows after ``cursor`` in walking order: newer ones when ``forward``, else older ones."""
    stamp, run_id = cursor
    if forward:
        return [stamp <= _CREATED, sa.or_(stamp < _CREATED, flow_runs.c.id > run_id)]
    return [stamp >= _CREATED, sa.or_(stamp > _CREATED, flow_runs.c.id < run_id)]


def _walk(query: sa.Select[Any], cursor: tuple[float, str] | None, forward: bool) -> sa.Select[Any]:
    if cursor is not None:
        query = query.where(*_beyond(cursor, forward))
    if forward:
        return query.order_by(flow_runs.c.created.asc(), flow_runs.c.id.asc())
    return query.order_by(flow_runs.c.created.desc(), flow_runs.c.id.desc())


def _conditions(where: RunFilter) -> list[Any]:
    conditions: list[Any] = []
    if where.state in _FINAL:
        # ``state || ''``: keeps SQLite off the (state, scheduled_start) index, which would fetch every run
        # in a final state (most of them) and sort them; walking the created index stops after one page.
        conditions.append(flow_runs.c.state.concat("") == where.state)
    elif where.state:
        # Active states hold few runs at any time: that index finds them all at once, however old.
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
        schedule=row.schedule_id,
        nominal_time=row.nominal_time,
    )
