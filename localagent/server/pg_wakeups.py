"""Wake-ups across server processes through PostgreSQL itself: ``NOTIFY`` out, one ``LISTEN`` connection in.

Several ``localagent server`` processes may share one PostgreSQL database. A run created (cancelled, moved,
relabelled, ...) through one of them must wake the claims long-polling on the others at once, and an idle
claim must cost nothing. So every notification of the in-process :class:`Notifier` is also published with
``pg_notify`` (by a publisher thread that coalesces bursts into one statement), and one listener thread per
process holds a dedicated connection that ``LISTEN``\\ s and hands what arrives to the local waiters.

The listener trusts its connection only while it hears itself: right after ``LISTEN`` and every
``_PROBE_EVERY`` seconds it sends a probe through the pool, the path other processes' notifications take,
and waits for it. A connection that went silently dead, or a PgBouncer in transaction pooling mode (which
hands the listening server connection to other clients, so notifications go nowhere), fails the probe.

While a probe has passed, ``notifier.cross_process`` is true and long-polls wait without re-querying.
When its connection is lost or deaf it reconnects (backing off up to ``_MAX_BACKOFF``); meanwhile long-polls fall
back to re-checking every ``recheck_interval``, and after it reconnects every waiter re-checks once, since
notifications sent while it was away are gone.

The channel is named after the connection's schema, so servers on different schemas of one database (as the
tests use) do not wake each other. Usage::

    wakeups = PgWakeups(database, notifier)   # only for PostgreSQL
    wakeups.start(); ...; wakeups.stop()
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from localagent.errors import StorageError
from localagent.server.database import Database
from localagent.server.notify import Notifier

log = logging.getLogger(__name__)

_PAYLOAD_LIMIT = 7000
"""Bytes per NOTIFY payload (PostgreSQL refuses more than 8,000); more topics go in several."""
_POLL = 0.5
"""Seconds the listener waits for notifications before it looks whether it should stop."""
_PROBE_EVERY = 30.0
"""Seconds between probes: a NOTIFY sent through the pool that the listener must receive."""
_PROBE_TIMEOUT = 10.0
"""Seconds a probe may take before the listener counts as deaf (and reconnects, re-checking meanwhile)."""
_MAX_BACKOFF = 10.0
_PROBE = "probe:"
APPLICATION_NAME = "localagent-listen"
"""The listener connection's ``application_name`` (to find it in ``pg_stat_activity``)."""
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}


class PgWakeups:
    """The publisher and the listener of one server process."""

    def __init__(self, database: Database, notifier: Notifier, listen_url: str | None = None) -> None:
        self._database = database
        self._notifier = notifier
        self._origin = uuid.uuid4().hex[:12]
        try:
            engine = database.engine if listen_url is None else sa.create_engine(_psycopg_url(listen_url))
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise StorageError(f"cannot use the LISTEN database URL (--listen-database): {exc}") from exc
        if engine.dialect.name != "postgresql":
            engine.dispose()
            raise StorageError(f"the LISTEN database URL must be PostgreSQL, not {engine.dialect.name}")
        _args, params = engine.dialect.create_connect_args(engine.url)
        self._connect_params: dict[str, Any] = {**params, **_KEEPALIVES, "application_name": APPLICATION_NAME}
        if listen_url is not None:
            engine.dispose()
        self._channel = ""
        self._pending: set[str] = set()
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._probes = 0
        self.deaf_probes = 0
        """Probes the listener did not hear in time (each one a reconnect); for tests and diagnostics."""
        self.listener_pid: int | None = None
        """The backend pid of the LISTEN connection while it is up."""

    @property
    def channel(self) -> str:
        return self._channel

    def start(self) -> None:
        with self._database.connect() as conn:
            schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
        self._channel = f"localagent:{schema}"[:63]
        self._notifier.forward_to(self.publish)
        for target, name in ((self._listen, "localagent-listen"), (self._publish_loop, "localagent-notify")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._notifier.forward_to(None)
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        for thread in self._threads:
            thread.join(5)
        self._notifier.set_cross_process(False)

    def publish(self, topics: tuple[str, ...]) -> None:
        """Queue ``topics`` for the other processes (called by ``Notifier.notify``; never blocks on the database)."""
        with self._changed:
            self._pending.update(topics)
            self._changed.notify()

    # -- publisher -----------------------------------------------------------------------------------

    def _publish_loop(self) -> None:
        backoff = 0.1
        while True:
            with self._changed:
                while not self._pending and not self._stopping.is_set():
                    self._changed.wait()
                if self._stopping.is_set():
                    return
                topics, self._pending = sorted(self._pending), set()
            try:
                with self._database.begin() as conn:
                    for payload in self._payloads(topics):
                        conn.execute(sa.select(sa.func.pg_notify(self._channel, payload)))
                backoff = 0.1
            except Exception as exc:  # the database is away: keep the topics, try again shortly
                log.warning("cannot notify the other server processes (%s); retrying", exc)
                with self._changed:
                    self._pending.update(topics)
                if self._stopping.wait(backoff):
                    return
                backoff = min(backoff * 2, _MAX_BACKOFF)

    def _payloads(self, topics: list[str]) -> list[str]:
        payloads: list[str] = []
        current = [self._origin]
        size = len(self._origin)
        for topic in topics:
            if size + len(topic) + 1 > _PAYLOAD_LIMIT and len(current) > 1:
                payloads.append("\n".join(current))
                current, size = [self._origin], len(self._origin)
            current.append(topic)
            size += len(topic.encode()) + 1
        payloads.append("\n".join(current))
        return payloads

    # -- listener ------------------------------------------------------------------------------------

    def _listen(self) -> None:
        backoff = 0.5
        deaf_told = False
        while not self._stopping.is_set():
            try:
                with psycopg.connect(autocommit=True, **self._connect_params) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                    self._probe(conn)
                    self.listener_pid = conn.info.backend_pid
                    self._notifier.set_cross_process(True)
                    # Whatever other processes notified while nobody listened is lost: every waiter re-checks.
                    self._notifier.wake_all()
                    if backoff > 0.5:
                        log.warning("listening for other server processes' changes again")
                    backoff, deaf_told = 0.5, False
                    self._receive(conn)
            except _Deaf:
                self.deaf_probes += 1
                self._lost()
                if not deaf_told:
                    log.warning(
                        "notifications sent to channel %r do not reach this server's LISTEN connection (a "
                        "PgBouncer in transaction pooling mode? give --listen-database with a direct URL); "
                        "long-polls re-check the database every second meanwhile",
                        self._channel,
                    )
                    deaf_told = True
            except Exception as exc:
                self._lost()
                if self._stopping.is_set():
                    return
                log.warning(
                    "lost the notification connection to PostgreSQL (%s); long-polls re-check the database "
                    "until it is back, reconnecting in %.1f s",
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                    backoff,
                )
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, _MAX_BACKOFF)

    def _lost(self) -> None:
        self._notifier.set_cross_process(False)
        self.listener_pid = None
        self._notifier.wake_all()  # waiters now sleeping without a time limit start re-checking

    def _receive(self, conn: psycopg.Connection[Any]) -> None:
        probed = time.monotonic()
        while not self._stopping.is_set():
            for note in conn.notifies(timeout=_POLL):
                self._deliver(note.payload)
            if time.monotonic() - probed > _PROBE_EVERY:
                self._probe(conn)
                probed = time.monotonic()

    def _probe(self, conn: psycopg.Connection[Any]) -> None:
        """Send a probe through the pool and hear it on ``conn`` (delivering what else arrives); else _Deaf."""
        self._probes += 1
        probe = f"{self._origin}\n{_PROBE}{self._probes}"
        with self._database.begin() as pooled:
            pooled.execute(sa.select(sa.func.pg_notify(self._channel, probe)))
        deadline = time.monotonic() + _PROBE_TIMEOUT
        while not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Deaf
            for note in conn.notifies(timeout=min(remaining, _POLL)):
                if note.payload == probe:
                    return
                self._deliver(note.payload)

    def _deliver(self, payload: str) -> None:
        origin, _, rest = payload.partition("\n")
        if origin != self._origin and rest:
            topics = [topic for topic in rest.split("\n") if not topic.startswith(_PROBE)]
            if topics:
                self._notifier.notify_local(*topics)


def _psycopg_url(url: str) -> sa.URL:
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


class _Deaf(Exception):
    """The listener did not hear its own probe in time."""
