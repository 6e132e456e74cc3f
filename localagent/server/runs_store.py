"""Flow runs: create, read, list, cancel and state changes (the rules live in ``transitions``).

Usage::

    run = runs.create(FlowRunCreate(flow="hello"))
    runs.set_state(run.id, StateUpdate(state=StateName.RUNNING, pid=123))

A state report is one ``UPDATE ... RETURNING`` guarded by the states it may come from, then the history
insert and read, in one transaction; the row is read first only when that update matched nothing (a
repeat, a 404 or a 409).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from localagent.api.models import (
    CreatedRun,
    Flow,
    FlowRun,
    FlowRunCreate,
    StateName,
    StateRecord,
    StateReport,
    StateReportResult,
    StateUpdate,
)
from localagent.api.text import PARAMETERS_MAX_BYTES
from localagent.errors import ApiConflict, ApiNotFound
from localagent.server.checks import bad_request
from localagent.server.database import Database, dump_json
from localagent.server.flows_store import FlowStore
from localagent.server.lost_runs import record_cancel, settle_late_report
from localagent.server.names import generate_run_name
from localagent.server.notify import RUNS, Notifier, logs_topic
from localagent.server.run_refs import is_full_id, resolve_run_ref
from localagent.server.run_rows import (
    RUN_BY_ID,
    load_runs,
    read_run,
    run_model,
    run_not_found,
    run_with_history,
)
from localagent.server.tables import flow_runs, run_history
from localagent.server.transitions import (
    MOVE_TO,
    MOVE_TO_SLIM,
    RETRYABLE,
    HistoryRows,
    apply_transition,
    check_transition,
    move_params,
    record_histories,
    record_history,
    schedule_retry,
)
from localagent.server.waiting import WaitingExplainer

S = StateName
U = TypeVar("U", bound=StateUpdate)
_CAS_ATTEMPTS = 10
_INSERT_RUN = flow_runs.insert()


def merged_labels(*groups: Iterable[str]) -> list[str]:
    """Labels in order of first appearance, without duplicates."""
    return list(dict.fromkeys(label for group in groups for label in group))


class RunStore:
    """Everything about flow runs except claims (``claims``) and logs (``logs_store``)."""

    def __init__(
        self,
        database: Database,
        flow_store: FlowStore,
        notifier: Notifier,
        clock: Callable[[], datetime],
        waiting: WaitingExplainer | None = None,
    ) -> None:
        self._db = database
        self._flows = flow_store
        self._notifier = notifier
        self._clock = clock
        self._waiting = waiting

    def create(self, request: FlowRunCreate) -> FlowRun:
        now = self._clock()
        with self._db.begin() as conn:
            flow = self._flows.get(request.flow, request.version, conn=conn)
            row = self._new_row(flow, request, now, "body")
            conn.execute(_INSERT_RUN, row)
            record_history(conn, row["id"], S.SCHEDULED, now, "created")
        self._notifier.notify(RUNS)
        history = [StateRecord(state=S.SCHEDULED, time=now, message="created")]
        return run_model(SimpleNamespace(**row), history)

    def create_many(self, requests: Sequence[FlowRunCreate]) -> list[CreatedRun]:
        """Create every run in one transaction, or none: a bad item is a 422 naming ``body.runs.<index>``."""
        now = self._clock()
        rows: list[dict[str, Any]] = []
        with self._db.begin() as conn:
            flows: dict[tuple[str, int | None], Flow] = {}  # one lookup per flow named, not per run
            for index, request in enumerate(requests):
                key = (request.flow, request.version)
                flow = flows.get(key)
                if flow is None:
                    try:
                        flow = flows[key] = self._flows.get(request.flow, request.version, conn=conn)
                    except ApiNotFound as exc:
                        raise bad_request(f"body.runs.{index}.flow", exc.detail) from exc
                rows.append(self._new_row(flow, request, now, f"body.runs.{index}"))
            conn.execute(_INSERT_RUN, rows)
            record_histories(conn, [row["id"] for row in rows], S.SCHEDULED, now, "created")
        self._notifier.notify(RUNS)
        return [
            CreatedRun(id=row["id"], name=row["name"], flow=row["flow"], flow_version=row["flow_version"])
            for row in rows
        ]

    @staticmethod
    def _new_row(flow: Flow, request: FlowRunCreate, now: datetime, field: str) -> dict[str, Any]:
        labels = merged_labels(flow.labels, flow.run_config.labels, request.labels)
        parameters = dump_json({**flow.parameters, **request.parameters})
        if len(parameters) > PARAMETERS_MAX_BYTES:
            raise bad_request(
                f"{field}.parameters",
                f"merged over the flow's defaults they take {len(parameters)} bytes as JSON; "
                f"at most {PARAMETERS_MAX_BYTES} are allowed",
            )
        return {
            "id": uuid.uuid4().hex,
            "name": request.name or generate_run_name(),
            "flow": flow.name,
            "flow_version": flow.version,
            "parameters": parameters,
            "labels": dump_json(labels),
            "run_config_type": flow.run_config.type,
            "scheduled_start": request.scheduled_start or now,
            "state": S.SCHEDULED.value,
            "state_message": "",
            "attempt": 1,
            "agent_id": None,
            "agent_name": None,
            "pid": None,
            "exit_code": None,
            "created": now,
            "updated": now,
            "started": None,
            "ended": None,
        }

    def get(self, ref: str) -> FlowRun:
        """One run, named by its id, a unique prefix of the id, or its name (see ``run_refs``)."""
        with self._db.connect() as conn:
            run = read_run(conn, ref)
            if run is None and not is_full_id(ref):
                run = read_run(conn, resolve_run_ref(conn, ref))
            if run is None:
                raise run_not_found(ref)
            if self._waiting is not None and run.state is S.SCHEDULED:
                run = self._waiting.annotate(conn, [run], self._clock())[0]
        return run

    def resolve(self, ref: str) -> str:
        """The id of the run ``ref`` names (a full id is returned without a query)."""
        if is_full_id(ref):
            return ref
        with self._db.connect() as conn:
            return resolve_run_ref(conn, ref)

    def list_runs(
        self,
        *,
        flow: str | None = None,
        state: StateName | None = None,
        agent: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[FlowRun]:
        query = sa.select(flow_runs)
        if flow is not None:
            query = query.where(flow_runs.c.flow == flow)
        if state is not None:
            query = query.where(flow_runs.c.state == state.value)
        if agent is not None:
            query = query.where(sa.or_(flow_runs.c.agent_id == agent, flow_runs.c.agent_name == agent))
        query = query.order_by(flow_runs.c.created.desc(), flow_runs.c.id.desc()).limit(limit).offset(offset)
        with self._db.snapshot() as conn:  # the runs, then their histories: both as of one moment
            runs = load_runs(conn, query)
            if self._waiting is not None:
                runs = self._waiting.annotate(conn, runs, self._clock())
        return runs

    def cancel(self, ref: str) -> FlowRun:
        """Scheduled -> Cancelled at once; Submitted/Running -> Cancelling (the agent carries it out)."""
        run_id = self.resolve(ref)
        for _ in range(_CAS_ATTEMPTS):
            now = self._clock()
            with self._db.begin() as conn:
                row = _row(conn, run_id)
                current = S(row.state)
                if current is S.CANCELLING:
                    break
                if current.is_final:
                    raise ApiConflict(409, f"flow run {run_id} is already {current.value}; nothing to cancel")
                if current is S.UNKNOWN:
                    record_cancel(conn, run_id, now)  # its agent gets the cancel when it reconnects
                    moved = True
                elif current is S.SCHEDULED:
                    moved = apply_transition(
                        conn, row, S.CANCELLED, "cancelled before start", now, self._flows, retry=False
                    )
                else:
                    moved = apply_transition(conn, row, S.CANCELLING, "cancel requested", now, self._flows)
            if moved:
                break
        self._notifier.notify(RUNS, logs_topic(run_id))
        return self.get(run_id)

    def set_state(self, run_id: str, update: StateUpdate) -> FlowRun:
        """Apply an agent's (or the run's own) state report; a repeat of the current state is a no-op."""
        update = self._storable(update)
        for _ in range(_CAS_ATTEMPTS):
            now = self._clock()
            with self._db.begin() as conn:
                moved = _move(conn, run_id, update, now, self._flows)
                if moved is not None:
                    run = run_with_history(conn, moved.row)
                    break
        else:
            raise ApiConflict(409, f"flow run {run_id} keeps changing; try again")
        self._notifier.notify(*moved.topics)
        return run

    def set_states(self, reports: Sequence[StateReport]) -> list[StateReportResult]:
        """Apply many reports in order, in one transaction; each exactly as :meth:`set_state` would.

        A refused report (404, 409) is answered in its result and does not stop the others.
        """
        results: list[StateReportResult] = []
        topics: set[str] = set()
        history = HistoryRows()
        with self._db.begin() as conn:
            for report in reports:
                update = self._storable(report)
                try:
                    for _ in range(_CAS_ATTEMPTS):
                        moved = _move(conn, report.run_id, update, self._clock(), self._flows, history=history)
                        if moved is not None:
                            break
                    else:
                        raise ApiConflict(409, f"flow run {report.run_id} keeps changing; try again")
                except (ApiNotFound, ApiConflict) as exc:
                    state = None if isinstance(exc, ApiNotFound) else _state_of(conn, report.run_id)
                    results.append(
                        StateReportResult(run_id=report.run_id, status=exc.status_code, state=state, detail=str(exc))
                    )
                    continue
                topics.update(moved.topics)
                results.append(StateReportResult(run_id=report.run_id, status=200, state=S(moved.row.state)))
            history.flush(conn)
        if topics:
            self._notifier.notify(*topics)
        return results

    def _storable(self, update: U) -> U:
        """``update`` as the database can hold it: PostgreSQL text cannot hold NUL (replaced by U+FFFD)."""
        if self._db.nul_free and "\x00" in update.message:
            return update.model_copy(update={"message": Database.without_nul(update.message)})
        return update


@dataclass(frozen=True)
class _Moved:
    """A state report applied (or found to be a repeat): the run's row now, and what to wake."""

    row: Any
    topics: tuple[str, ...] = ()


def _move(
    conn: Connection,
    run_id: str,
    update: StateUpdate,
    now: datetime,
    flows: FlowStore,
    *,
    history: HistoryRows | None = None,
) -> _Moved | None:
    """Apply one state report inside ``conn``'s transaction; None when the run changed in between (retry).

    Raises ``ApiNotFound`` for an unknown run and ``ApiConflict`` for an illegal move. With ``history`` (a
    batch), the history record is gathered there and the row returned by a move holds only ``SLIM_COLUMNS``.
    """
    move = (MOVE_TO if history is None else MOVE_TO_SLIM).get(update.state)
    params = move_params(
        run_id, update.message, now, pid=update.pid, exit_code=update.exit_code, attempt=update.attempt
    )
    row = None if move is None else conn.execute(move, params).first()
    if row is not None:
        if history is None:
            record_history(conn, run_id, update.state, now, update.message)
        else:
            history.add(run_id, update.state, now, update.message)
            if update.state in RETRYABLE:
                history.flush(conn)  # a retry adds its own record next
        retried = update.state in RETRYABLE and schedule_retry(conn, row, now, flows)
        if retried:
            row = _row(conn, run_id)
        # Claims wait on RUNS: only a cancel to deliver or a retry to hand out concerns them.
        if update.state is S.CANCELLING or retried:
            return _Moved(row, (RUNS, logs_topic(run_id)))
        return _Moved(row, (logs_topic(run_id),))
    # Nothing moved: a repeat, an unknown run, an illegal move, or a run changed in between.
    if history is not None:
        history.flush(conn)  # the echo check below reads the run's history
    row = _row(conn, run_id)
    current = S(row.state)
    same_attempt = update.attempt is None or update.attempt == row.attempt
    if (update.state is current and same_attempt) or _is_retried_echo(conn, row, update.state):
        return _Moved(row)
    if settle_late_report(conn, row, update, now, flows):  # an attempt replaced after its agent went silent
        return _Moved(_row(conn, run_id), (RUNS, logs_topic(run_id)))
    if not same_attempt and update.state is not current:
        raise ApiConflict(409, f"flow run {run_id} is at attempt {row.attempt}, not {update.attempt}")
    check_transition(run_id, current, update.state)
    return None


def _state_of(conn: Connection, run_id: str) -> StateName | None:
    state = conn.execute(sa.select(flow_runs.c.state).where(flow_runs.c.id == run_id)).scalar()
    return None if state is None else S(state)


def _row(conn: Connection, run_id: str) -> Any:
    row = conn.execute(RUN_BY_ID, {"run_id": run_id}).first()
    if row is None:
        raise run_not_found(run_id)
    return row


def _is_retried_echo(conn: Connection, row: Any, requested: StateName) -> bool:
    """A resent final report whose first copy already ended the attempt and scheduled a retry."""
    if row.state != S.SCHEDULED.value or row.attempt <= 1 or requested not in RETRYABLE:
        return False
    last_two = conn.execute(
        sa.select(run_history.c.state).where(run_history.c.run_id == row.id).order_by(run_history.c.id.desc()).limit(2)
    ).all()
    return len(last_two) == 2 and last_two[1].state == requested.value
