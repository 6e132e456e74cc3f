"""Naming a run: its full id, any unique prefix of the id, or its name.

Operators read short ids and generated names (``proud-dolphin-18``) everywhere, so the read and cancel
endpoints take any of them. A full 32-hex id is taken as it is, without a query (the hot path of agents
and run tokens); anything else is looked up by id prefix and by exact name. Names are not unique: two runs
may share one (a name given twice, or a generated name drawn again), and a prefix may match several ids.
A reference that matches more than one run is refused with a 409 that lists the matches, newest first, so
the caller can pick one by a longer prefix. Usage::

    run_id = resolve_run_ref(conn, "506f15aa")        # -> "506f15aa3c...", or ApiNotFound / ApiConflict
"""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from localagent.errors import ApiConflict
from localagent.server.run_rows import run_not_found
from localagent.server.tables import flow_runs

_FULL_ID = re.compile(r"[0-9a-f]{32}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_SHOWN = 10
"""Matches listed in an ambiguity error (the count says how many more there are)."""

_COLUMNS = (flow_runs.c.id, flow_runs.c.name, flow_runs.c.flow, flow_runs.c.state, flow_runs.c.created)
_BY_PREFIX = (
    sa.select(*_COLUMNS)
    # A range on the primary key, not LIKE: SQLite's LIKE ignores case and would not use the index.
    .where(flow_runs.c.id >= sa.bindparam("low"), flow_runs.c.id < sa.bindparam("high"))
    .order_by(flow_runs.c.created.desc(), flow_runs.c.id)
    .limit(sa.bindparam("limit"))
)
_BY_NAME = (
    sa.select(*_COLUMNS)
    .where(flow_runs.c.name == sa.bindparam("name"))
    .order_by(flow_runs.c.created.desc(), flow_runs.c.id)
    .limit(sa.bindparam("limit"))
)
_COUNT_PREFIX = sa.select(sa.func.count()).where(
    flow_runs.c.id >= sa.bindparam("low"), flow_runs.c.id < sa.bindparam("high")
)
_COUNT_NAME = sa.select(sa.func.count()).where(flow_runs.c.name == sa.bindparam("name"))


def is_full_id(ref: str) -> bool:
    """A run id as the server makes them: 32 lowercase hex digits."""
    return _FULL_ID.fullmatch(ref) is not None


def resolve_run_ref(conn: Connection, ref: str) -> str:
    """The id of the one run that ``ref`` names (see the module docstring); 404 if none, 409 if several."""
    if is_full_id(ref):
        return ref
    text = ref.strip()
    if not text:
        raise run_not_found(ref)
    matches: dict[str, Any] = {}
    prefix = text.lower() if _HEX.fullmatch(text) else None
    if prefix is not None:
        bounds = {"low": prefix, "high": prefix[:-1] + chr(ord(prefix[-1]) + 1)}
        for row in conn.execute(_BY_PREFIX, {**bounds, "limit": _SHOWN + 1}):
            matches[row.id] = row
    for row in conn.execute(_BY_NAME, {"name": text, "limit": _SHOWN + 1}):
        matches[row.id] = row
    if not matches:
        raise run_not_found(ref)
    if len(matches) == 1:
        return next(iter(matches))
    total = conn.execute(_COUNT_NAME, {"name": text}).scalar_one()
    if prefix is not None:
        total += conn.execute(_COUNT_PREFIX, bounds).scalar_one()
        # A run whose name is also a prefix of its own id would be counted twice; rare enough to ignore
        # in a count that only says "and N more".
    raise _ambiguous(ref, sorted(matches.values(), key=lambda row: (-row.created.timestamp(), row.id)), total)


def _ambiguous(ref: str, rows: list[Any], total: int) -> ApiConflict:
    shown = rows[:_SHOWN]
    listed = "; ".join(
        f"{row.id} ({row.name}, flow {row.flow}, {row.state}, created {row.created:%Y-%m-%d %H:%M:%S} UTC)"
        for row in shown
    )
    more = max(total, len(rows)) - len(shown)
    tail = f"; and {more} more" if more > 0 else ""
    return ApiConflict(
        409,
        f"flow run {ref!r} is ambiguous: it matches {max(total, len(rows))} runs (newest first): {listed}{tail}. "
        "Name the run by its id or a longer prefix of it",
    )
