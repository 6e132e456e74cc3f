"""Claims: hand due runs to exactly one agent each, atomically, and long-poll when there is nothing to do.

A claim scans Scheduled, due runs of the accepted run-config types in scheduling order, applies the label
rule in Python, and takes each match with a compare-and-set ``UPDATE ... WHERE state = 'Scheduled'``. On
SQLite writers are serialised; on PostgreSQL the update first locks its candidates with ``FOR UPDATE SKIP
LOCKED``, so a claimer (in this or another server process) passes over rows another one is taking, and the
re-checked state condition rejects rows taken since the scan. Either way a run goes to one agent only. Usage::

    reply = await claims.claim_wait(agent_id, ClaimRequest(slots=4, wait=10, labels=["etl"]))
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool

from localagent.api.models import ClaimedRun, ClaimReply, ClaimRequest, StateName
from localagent.server.agents_store import AgentStore
from localagent.server.database import Database, load_json
from localagent.server.flows_store import FlowStore
from localagent.server.notify import RUNS, Notifier
from localagent.server.runs_store import load_runs
from localagent.server.settings import ServerSettings
from localagent.server.tables import flow_runs, run_logs
from localagent.server.transitions import record_histories

S = StateName
_SCAN_BATCH = 256
_SET_TOKEN = (
    sa.update(flow_runs).where(flow_runs.c.id == sa.bindparam("run_id")).values(token_hash=sa.bindparam("token_hash"))
)


def label_rule_accepts(run_labels: Sequence[str], agent_labels: Sequence[str], run_unlabeled: bool) -> bool:
    """Every label of the run is one of the agent's; an unlabeled run needs an unlabeled agent or
    ``run_unlabeled``."""
    if not run_labels:
        return run_unlabeled or not agent_labels
    accepted = set(agent_labels)
    return all(label in accepted for label in run_labels)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ClaimService:
    """Claims and their long-poll."""

    def __init__(
        self,
        database: Database,
        flow_store: FlowStore,
        agent_store: AgentStore,
        notifier: Notifier,
        settings: ServerSettings,
        clock: Callable[[], datetime],
    ) -> None:
        self._db = database
        self._flows = flow_store
        self._agents = agent_store
        self._notifier = notifier
        self._settings = settings
        self._clock = clock
        self._delivered_lock = threading.Lock()
        self._delivered_cancels: dict[str, set[str]] = {}

    async def claim_wait(self, agent_id: str, request: ClaimRequest) -> ClaimReply:
        """Answer at once when runs were claimed or a new cancel is pending, else wait for a change.

        The wait is capped at half of ``agent_timeout`` so that an agent in a long poll is never lost.
        """
        agent_name = await run_in_threadpool(self._agents.touch, agent_id)
        deadline = time.monotonic() + min(request.wait, self._settings.agent_timeout / 2)
        while True:
            with self._notifier.subscribe(RUNS) as wakeup:
                reply, news = await run_in_threadpool(self.claim_now, agent_id, agent_name, request)
                remaining = deadline - time.monotonic()
                if reply.runs or news or remaining <= 0 or self._notifier.closed:
                    return reply
                await wakeup.wait(min(remaining, self._settings.recheck_interval))

    def claim_now(self, agent_id: str, agent_name: str, request: ClaimRequest) -> tuple[ClaimReply, bool]:
        """One attempt; returns the reply and whether it carries a cancel not delivered by a claim before."""
        now = self._clock()
        with self._db.begin() as conn:
            cancel = [
                row.id
                for row in conn.execute(
                    sa.select(flow_runs.c.id).where(
                        flow_runs.c.agent_id == agent_id, flow_runs.c.state == S.CANCELLING.value
                    )
                )
            ]
            taken: dict[str, str] = {}
            if request.slots > 0 and request.run_config_types:
                for batch in self._matching(conn, request, now):
                    for run_id in self._take(conn, batch[: request.slots - len(taken)], agent_id, agent_name, now):
                        taken[run_id] = secrets.token_urlsafe(32)
                    if len(taken) >= request.slots:
                        break
                if taken:
                    conn.execute(
                        _SET_TOKEN, [{"run_id": run_id, "token_hash": hash_token(t)} for run_id, t in taken.items()]
                    )
                    record_histories(conn, list(taken), S.SUBMITTED, now, f"claimed by agent {agent_name}")
            claimed = self._describe(conn, taken) if taken else []
        if taken:
            self._notifier.notify(RUNS)
        return ClaimReply(runs=claimed, cancel=cancel), self._note_cancels(agent_id, cancel)

    def _matching(self, conn: Connection, request: ClaimRequest, now: datetime) -> Iterator[list[str]]:
        """Batches of ids of due Scheduled runs this agent accepts, oldest schedule first (keyset-paged)."""
        types = list(dict.fromkeys(request.run_config_types))
        after: tuple[Any, str] | None = None
        while True:
            query = (
                sa.select(flow_runs.c.id, flow_runs.c.labels, flow_runs.c.scheduled_start)
                .where(
                    flow_runs.c.state == S.SCHEDULED.value,
                    flow_runs.c.scheduled_start <= now,
                    flow_runs.c.run_config_type.in_(types),
                )
                .order_by(flow_runs.c.scheduled_start, flow_runs.c.id)
                .limit(_SCAN_BATCH)
            )
            if after is not None:
                # Typed literals: an untyped datetime would reach PostgreSQL as a timestamp, not epoch seconds.
                cursor = sa.tuple_(
                    sa.literal(after[0], flow_runs.c.scheduled_start.type), sa.literal(after[1], flow_runs.c.id.type)
                )
                query = query.where(sa.tuple_(flow_runs.c.scheduled_start, flow_runs.c.id) > cursor)
            rows = conn.execute(query).all()
            matches = [
                row.id
                for row in rows
                if label_rule_accepts(load_json(row.labels), request.labels, request.run_unlabeled)
            ]
            if matches:
                yield matches
            if len(rows) < _SCAN_BATCH:
                return
            after = (rows[-1].scheduled_start, rows[-1].id)

    def _take(self, conn: Connection, run_ids: list[str], agent_id: str, agent_name: str, now: datetime) -> list[str]:
        """Compare-and-set Scheduled -> Submitted; returns the ids this agent won."""
        if self._db.backend == "postgresql":
            # Lock the candidates first, skipping rows another transaction holds (usually another claimer
            # taking them): claimers in any number of server processes never wait on each other and two
            # claims over overlapping batches cannot deadlock. The update below re-checks the state.
            locked = set(
                conn.execute(
                    sa.select(flow_runs.c.id)
                    .where(flow_runs.c.id.in_(run_ids), flow_runs.c.state == S.SCHEDULED.value)
                    .order_by(flow_runs.c.id)
                    .with_for_update(skip_locked=True)
                ).scalars()
            )
            run_ids = [run_id for run_id in run_ids if run_id in locked]  # keeps the scheduling order
            if not run_ids:
                return []
        result = conn.execute(
            sa.update(flow_runs)
            .where(flow_runs.c.id.in_(run_ids), flow_runs.c.state == S.SCHEDULED.value)
            .values(
                state=S.SUBMITTED.value,
                state_message=f"claimed by agent {agent_name}",
                agent_id=agent_id,
                agent_name=agent_name,
                submitted_at=now,
                updated=now,
            )
            .returning(flow_runs.c.id)
        )
        won = {row.id for row in result}
        return [run_id for run_id in run_ids if run_id in won]

    def _describe(self, conn: Connection, taken: dict[str, str]) -> list[ClaimedRun]:
        runs = load_runs(conn, sa.select(flow_runs).where(flow_runs.c.id.in_(list(taken))))
        last_seqs = dict(
            conn.execute(
                sa.select(run_logs.c.run_id, sa.func.max(run_logs.c.seq))
                .where(run_logs.c.run_id.in_(list(taken)))
                .group_by(run_logs.c.run_id)
            ).all()
        )
        order = {run_id: index for index, run_id in enumerate(taken)}
        runs.sort(key=lambda run: order[run.id])
        return [
            ClaimedRun(
                run=run,
                flow=self._flows.get(run.flow, run.flow_version),
                token=taken[run.id],
                next_log_seq=int(last_seqs.get(run.id, -1)) + 1,
            )
            for run in runs
        ]

    def _note_cancels(self, agent_id: str, cancel: list[str]) -> bool:
        """Remember which cancels a claim already delivered, so the next claim does not return at once."""
        current = set(cancel)
        with self._delivered_lock:
            delivered = self._delivered_cancels.get(agent_id, set())
            news = bool(current - delivered)
            if current:
                self._delivered_cancels[agent_id] = current
            else:
                self._delivered_cancels.pop(agent_id, None)
        return news
