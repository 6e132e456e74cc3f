"""Claims: hand due runs to exactly one agent each, atomically.

A claim scans Scheduled, due runs of the accepted run-config types in scheduling order, applies the label
rule in Python, and takes the matches with one compare-and-set ``UPDATE ... WHERE state = 'Scheduled'
RETURNING`` (the claimed rows come back from it; they are not read again). On SQLite writers are
serialised; on PostgreSQL the candidates are first locked with ``FOR UPDATE SKIP LOCKED``, so a claimer
(in this or another server process) passes over rows another one is taking, and the re-checked state
condition rejects rows taken since the scan. Either way a run goes to one agent only. Usage::

    attempt = claims.claim_now(agent_id, ClaimRequest(slots=4, labels=["etl"]))
    attempt.reply.runs, attempt.next_due

The long-poll around it lives in ``claim_poll``.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from localagent.api.models import ClaimedRun, ClaimReply, ClaimRequest, StateName
from localagent.errors import ApiNotFound
from localagent.server.database import Database, load_json
from localagent.server.flows_store import FlowStore
from localagent.server.run_rows import runs_with_history
from localagent.server.tables import agents, flow_runs, run_logs
from localagent.server.transitions import record_histories

S = StateName
_FIRST_PAGE = 32
_PAGE = 256
_NOW = sa.bindparam("now", type_=flow_runs.c.scheduled_start.type)
_RAW_START = sa.type_coerce(flow_runs.c.scheduled_start, sa.Double)
_DUE = (
    sa.select(flow_runs.c.id, flow_runs.c.labels, _RAW_START)
    .where(
        flow_runs.c.state == S.SCHEDULED.value,
        flow_runs.c.scheduled_start <= _NOW,
        flow_runs.c.run_config_type.in_(sa.bindparam("types", expanding=True)),
    )
    .order_by(flow_runs.c.scheduled_start, flow_runs.c.id)
    .limit(sa.bindparam("page"))
)
# Keyset paging on (scheduled_start, id), compared as raw epoch seconds.
_DUE_AFTER = _DUE.where(
    sa.tuple_(_RAW_START, flow_runs.c.id)
    > sa.tuple_(sa.bindparam("after_start", type_=sa.Double), sa.bindparam("after_id", type_=sa.String))
)
_NEXT_DUE = sa.select(sa.func.min(flow_runs.c.scheduled_start)).where(
    flow_runs.c.state == S.SCHEDULED.value, flow_runs.c.scheduled_start > _NOW
)
_CANCELLING_OF_AGENT = sa.select(flow_runs.c.id).where(
    flow_runs.c.agent_id == sa.bindparam("agent_id"), flow_runs.c.state == S.CANCELLING.value
)
_LOCK_SCHEDULED = (
    sa.select(flow_runs.c.id)
    .where(flow_runs.c.id.in_(sa.bindparam("run_ids", expanding=True)), flow_runs.c.state == S.SCHEDULED.value)
    .order_by(flow_runs.c.id)
    .with_for_update(skip_locked=True)
)
_TAKE = (
    sa.update(flow_runs)
    .where(flow_runs.c.id.in_(sa.bindparam("run_ids", expanding=True)), flow_runs.c.state == S.SCHEDULED.value)
    .values(
        state=S.SUBMITTED.value,
        state_message=sa.bindparam("message", type_=sa.Text),
        agent_id=sa.bindparam("agent", type_=sa.String),
        agent_name=sa.bindparam("agent_name", type_=sa.String),
        submitted_at=_NOW,
        updated=_NOW,
    )
    .returning(*flow_runs.c)
)
_SET_TOKEN = (
    sa.update(flow_runs)
    .where(flow_runs.c.id == sa.bindparam("run_id"))
    .values(token_hash=sa.bindparam("new_token_hash", type_=sa.String))
)
_TOUCH_AGENT = (
    sa.update(agents)
    .where(agents.c.id == sa.bindparam("agent_id"))
    .values(last_heartbeat=sa.bindparam("now", type_=agents.c.last_heartbeat.type))
    .returning(agents.c.name, agents.c.stopped)
)
_LAST_SEQS = (
    sa.select(run_logs.c.run_id, sa.func.max(run_logs.c.seq))
    .where(run_logs.c.run_id.in_(sa.bindparam("run_ids", expanding=True)))
    .group_by(run_logs.c.run_id)
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


class ClaimAbandoned(Exception):
    """Raised inside a claim's transaction to roll it back: its client is gone."""


@dataclass(frozen=True)
class ClaimAttempt:
    """One claim: the reply, whether it carries a cancel no claim delivered before, and when the next
    Scheduled run that is not due yet comes due (None: none is waiting)."""

    reply: ClaimReply
    news: bool
    next_due: datetime | None


class ClaimService:
    """One-shot claims (``claim_now``); ``claim_poll.ClaimPoll`` waits between them."""

    def __init__(self, database: Database, flow_store: FlowStore, clock: Callable[[], datetime]) -> None:
        self._db = database
        self._flows = flow_store
        self._clock = clock
        self._delivered_lock = threading.Lock()
        self._delivered_cancels: dict[str, set[str]] = {}

    def claim_now(
        self, agent_id: str, request: ClaimRequest, still_wanted: Callable[[], bool] | None = None
    ) -> ClaimAttempt:
        """Claim up to ``request.slots`` runs now; the claim counts as a heartbeat of the agent.

        ``still_wanted`` is asked before committing runs: when it says False (the client went away),
        nothing is handed out and the runs stay Scheduled.
        """
        now = self._clock()
        claimed: list[ClaimedRun] = []
        try:
            with self._db.begin() as conn:
                agent = conn.execute(_TOUCH_AGENT, {"agent_id": agent_id, "now": now}).first()
                if agent is None:
                    raise ApiNotFound(404, f"agent {agent_id!r} not found; register it again")
                agent_name = agent.name
                cancel = list(conn.execute(_CANCELLING_OF_AGENT, {"agent_id": agent_id}).scalars())
                # A claim still in flight from an agent that said it stopped gets no runs: nobody would run them.
                if request.slots > 0 and request.run_config_types and agent.stopped is None:
                    claimed = self._claim(conn, agent_id, str(agent_name), request, now)
                    if claimed and still_wanted is not None and not still_wanted():
                        raise ClaimAbandoned
                next_due = None if claimed else conn.execute(_NEXT_DUE, {"now": now}).scalar()
                # The whole reply is built (and validated) before the commit: a run that cannot be put into
                # it rolls the claim back, so no run is left Submitted to an agent that never heard of it.
                reply = ClaimReply(runs=claimed, cancel=cancel)
        except ClaimAbandoned:
            return ClaimAttempt(ClaimReply(), news=False, next_due=None)
        return ClaimAttempt(reply, self._note_cancels(agent_id, cancel), next_due)

    def _claim(
        self, conn: Connection, agent_id: str, agent_name: str, request: ClaimRequest, now: datetime
    ) -> list[ClaimedRun]:
        taken: list[Any] = []
        for batch in self._matching(conn, request, now):
            taken += self._take(conn, batch[: request.slots - len(taken)], agent_id, agent_name, now)
            if len(taken) >= request.slots:
                break
        if not taken:
            return []
        tokens = {row.id: secrets.token_urlsafe(32) for row in taken}
        conn.execute(_SET_TOKEN, [{"run_id": run_id, "new_token_hash": hash_token(t)} for run_id, t in tokens.items()])
        record_histories(conn, list(tokens), S.SUBMITTED, now, f"claimed by agent {agent_name}")
        last_seqs = {run_id: seq for run_id, seq in conn.execute(_LAST_SEQS, {"run_ids": list(tokens)})}
        return [
            ClaimedRun(
                run=run,
                flow=self._flows.get(run.flow, run.flow_version, conn=conn),
                token=tokens[run.id],
                next_log_seq=int(last_seqs.get(run.id, -1)) + 1,
            )
            for run in runs_with_history(conn, taken)
        ]

    def _matching(self, conn: Connection, request: ClaimRequest, now: datetime) -> Iterator[list[str]]:
        """Batches of ids of due Scheduled runs this agent accepts, oldest schedule first (keyset-paged).

        The first page is small (a claim usually wants a few runs and the first due ones usually match);
        later pages are larger, for agents whose labels match few of many waiting runs.
        """
        params: dict[str, Any] = {
            "now": now,
            "types": list(dict.fromkeys(request.run_config_types)),
            "page": max(_FIRST_PAGE, 2 * request.slots),
        }
        query = _DUE
        while True:
            rows = conn.execute(query, params).all()
            matches = [
                run_id
                for run_id, labels, _start in rows
                if label_rule_accepts(
                    load_json(labels) if labels != "[]" else (), request.labels, request.run_unlabeled
                )
            ]
            if matches:
                yield matches
            if len(rows) < params["page"]:
                return
            query = _DUE_AFTER
            params.update(page=_PAGE, after_start=rows[-1][2], after_id=rows[-1][0])

    def _take(self, conn: Connection, run_ids: list[str], agent_id: str, agent_name: str, now: datetime) -> list[Any]:
        """Compare-and-set Scheduled -> Submitted; the rows this agent won, in scheduling order."""
        if self._db.backend == "postgresql":
            # Lock the candidates first, skipping rows another transaction holds (usually another claimer
            # taking them): claimers in any number of server processes never wait on each other and two
            # claims over overlapping batches cannot deadlock. The update below re-checks the state.
            locked = set(conn.execute(_LOCK_SCHEDULED, {"run_ids": run_ids}).scalars())
            run_ids = [run_id for run_id in run_ids if run_id in locked]
            if not run_ids:
                return []
        params = {
            "run_ids": run_ids,
            "now": now,
            "message": f"claimed by agent {agent_name}",
            "agent": agent_id,
            "agent_name": agent_name,
        }
        won = {row.id: row for row in conn.execute(_TAKE, params)}
        return [won[run_id] for run_id in run_ids if run_id in won]

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
