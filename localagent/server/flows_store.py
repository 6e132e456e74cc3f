"""Flows: versioned specs. Registering an unchanged spec returns the latest version; a changed one adds one.

Usage::

    flow = FlowStore(database).register(FlowSpec(name="hello", command="echo hi"))
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from localagent.api.models import Flow, FlowSpec
from localagent.errors import ApiNotFound
from localagent.server.database import Database, InvalidData, dump_json, load_json
from localagent.server.tables import flows

_REGISTER_ATTEMPTS = 3
_LATEST_VERSION = sa.select(sa.func.max(flows.c.version)).where(flows.c.name == sa.bindparam("name"))
_VERSION = sa.select(flows).where(flows.c.name == sa.bindparam("name"), flows.c.version == sa.bindparam("version"))


class FlowStore:
    """Register, list and fetch flow versions. Versions never change, so fetched ones are cached."""

    def __init__(
        self,
        database: Database,
        clock: Callable[[], datetime],
        on_register: Callable[[Connection, Flow, datetime], None] | None = None,
    ) -> None:
        self._db = database
        self._clock = clock
        # Called in the registering transaction with each new version (the schedules follow it).
        self._on_register = on_register
        self._cache: dict[tuple[str, int], Flow] = {}
        self._cache_lock = threading.Lock()

    def register(self, spec: FlowSpec) -> Flow:
        # A flow without schedules is stored as before schedules existed, so re-registering one that a
        # database from then holds is still "unchanged".
        body = dump_json(spec.model_dump(mode="json", exclude={"schedules"} if not spec.schedules else None))
        for attempt in range(_REGISTER_ATTEMPTS):
            try:
                return self._register_once(spec, body)
            except InvalidData:
                # Another registration of this flow took the same new version first; look again.
                if attempt == _REGISTER_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _register_once(self, spec: FlowSpec, body: str) -> Flow:
        with self._db.begin() as conn:
            # Concurrent registrations of one flow (from several server processes) take turns instead of
            # racing for the same new version.
            self._db.serialize(conn, f"flow:{spec.name}")
            latest = conn.execute(
                sa.select(flows).where(flows.c.name == spec.name).order_by(flows.c.version.desc()).limit(1)
            ).first()
            if latest is not None and latest.spec == body:
                return _flow(latest)
            version = 1 if latest is None else latest.version + 1
            now = self._clock()
            conn.execute(sa.insert(flows).values(name=spec.name, version=version, spec=body, created=now))
            flow = Flow.model_validate({**load_json(body), "version": version, "created": now})
            if self._on_register is not None:
                self._on_register(conn, flow, now)
        return flow

    def latest(self) -> list[Flow]:
        newest = (
            sa.select(flows.c.name, sa.func.max(flows.c.version).label("version")).group_by(flows.c.name).subquery()
        )
        query = (
            sa.select(flows)
            .join(newest, sa.and_(flows.c.name == newest.c.name, flows.c.version == newest.c.version))
            .order_by(flows.c.name)
        )
        with self._db.connect() as conn:
            return [_flow(row) for row in conn.execute(query)]

    def get(self, name: str, version: int | None = None, *, conn: Connection | None = None) -> Flow:
        """A flow version (the latest without ``version``), read through ``conn`` if given.

        Versions never change, so a known one costs no query; the latest costs one indexed ``max()``.
        """
        with self._reading(conn) as reader:
            if version is None:
                version = reader.execute(_LATEST_VERSION, {"name": name}).scalar()
                if version is None:
                    raise ApiNotFound(404, f"flow {name!r} not found")
            with self._cache_lock:
                cached = self._cache.get((name, version))
            if cached is not None:
                return cached
            row = reader.execute(_VERSION, {"name": name, "version": version}).first()
        if row is None:
            raise ApiNotFound(404, f"flow {name!r} has no version {version}")
        flow = _flow(row)
        with self._cache_lock:
            self._cache[(flow.name, flow.version)] = flow
        return flow

    @contextmanager
    def _reading(self, conn: Connection | None) -> Iterator[Connection]:
        if conn is not None:
            yield conn
        else:
            with self._db.connect() as own:
                yield own


def _flow(row: sa.Row[tuple[object, ...]]) -> Flow:
    spec = load_json(row.spec)
    return Flow.model_validate({**spec, "version": row.version, "created": row.created})
