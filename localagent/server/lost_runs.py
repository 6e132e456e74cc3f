"""Runs of a silent agent: Unknown, reconnection, late reports, replacement only by policy, the lost timeout.

Modelled on Nomad's disconnected clients. The life of a run whose agent goes silent::

    Running --(no heartbeat for agent_timeout)--> Unknown          mark_unknown (the agents sweep)
    Unknown --(the agent heartbeats, lists it)--> Running          reconnect (Cancelling if a cancel is due)
    Unknown --(the agent's late report)---------> Success | ...    the ordinary MOVE_TO (Unknown is a source)
    Unknown --(retry_lost flow, "stop" agent,     Crashed -> Scheduled (attempt + 1)   LostRunSweep
               its own stop time has passed)-->
    Unknown --(lost_timeout passed)-------------> Crashed (-> Scheduled only with retry_lost)

A run is never retried while its agent may still run it: an agent that declared ``on_api_lost = "keep"``
(or declared nothing, as agents before this existed) keeps Unknown runs until the lost timeout. A report
for an attempt that was replaced meanwhile is answered 200 and reconciled by :func:`settle_late_report`.

Usage::

    unknown = mark_unknown(conn, rows, now, flows)                    # from AgentStore.sweep_lost
    back = reconnect(conn, agent_id, running, now, flows)              # from AgentStore.heartbeat
    moved = LostRunSweep(database, flows, settings, clock).sweep()     # every sweep
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from localagent.api.models import LostPolicy, StateName, StateUpdate
from localagent.config.units import format_duration
from localagent.server.database import Database
from localagent.server.flows_store import FlowStore
from localagent.server.settings import ServerSettings
from localagent.server.tables import agents, flow_runs, run_history, run_logs
from localagent.server.transitions import apply_transition, record_history

S = StateName
log = logging.getLogger(__name__)

REPLACED_MESSAGE = "agent lost; stopped by its on_api_lost policy"
NEVER_BACK = "agent never came back within"
STOP_MARGIN = 2.0
"""Seconds added to a stop agent's window, beyond its beat interval and the sweep interval (clock skew)."""
LATE_ATTEMPT = 1
"""The attempt taken for a report sent with a replaced attempt's token that names none (older than any
replacement, so it is recorded as late)."""
LATE_OUTPUT_GAP = 10**9
"""The replacement's output starts this many seqs after the lost attempt's last stored line, so lines of the
lost attempt that arrive late are stored (under the marker line) instead of clashing with the new ones."""

_HELD = (S.SUBMITTED.value, S.RUNNING.value, S.CANCELLING.value)
_AGENT_COLUMNS = (agents.c.hostname.label("agent_host"), agents.c.name.label("agent_own_name"))


AGENT_COLUMNS = _AGENT_COLUMNS


def agent_label(row: Any) -> str:
    """``host/name`` of the run's agent (from a row with ``_AGENT_COLUMNS``), else the name the run holds."""
    name = row.agent_own_name or row.agent_name or "?"
    return f"{row.agent_host}/{name}" if row.agent_host else str(name)


def policy_of(text: str | None) -> LostPolicy:
    """The stored policy of an agent; one that told none (or garbage) is ``keep``."""
    if not text:
        return LostPolicy()
    try:
        return LostPolicy.model_validate(json.loads(text))
    except (ValueError, ValidationError):
        return LostPolicy()


def stop_window(policy: LostPolicy, sweep_interval: float) -> float | None:
    """Seconds after an agent's last heartbeat by which it has stopped its runs itself; None: it never does.

    The agent counts from its last contact, which is at most one beat interval after the last heartbeat the
    server saw; then it signals, waits ``stop_grace`` and SIGKILLs the process group.
    """
    if policy.on_api_lost != "stop":
        return None
    return policy.api_lost_after + policy.beat_interval + policy.stop_grace + sweep_interval + STOP_MARGIN


def cancel_wanted(conn: Connection, run_id: str) -> bool:
    """Whether the current attempt was asked to cancel (a Cancelling entry since its last Scheduled one)."""
    states = conn.execute(
        sa.select(run_history.c.state).where(run_history.c.run_id == run_id).order_by(run_history.c.id.desc())
    ).scalars()
    for state in states:
        if state == S.SCHEDULED.value:
            return False
        if state == S.CANCELLING.value:
            return True
    return False


def mark_unknown(conn: Connection, rows: Iterable[Any], timeout: float, now: datetime, flows: FlowStore) -> list[str]:
    """Move the active runs of silent agents to Unknown (never Crashed, never retried here); ``rows`` are
    ``flow_runs`` rows with ``_AGENT_COLUMNS`` (see :data:`AGENT_COLUMNS`)."""
    moved = []
    for row in rows:
        message = f"agent {agent_label(row)} silent for {format_duration(timeout)}; the run may still be running"
        if apply_transition(conn, row, S.UNKNOWN, message, now, flows, retry=False):
            moved.append(row.id)
    return moved


def reconnect(conn: Connection, agent_id: str, running: list[str], now: datetime, flows: FlowStore) -> list[str]:
    """The agent heartbeats again: its Unknown runs it still runs go back to Running (or Cancelling)."""
    if not running:
        return []
    query = (
        sa.select(flow_runs, *_AGENT_COLUMNS)
        .join(agents, agents.c.id == flow_runs.c.agent_id)
        .where(
            flow_runs.c.agent_id == agent_id,
            flow_runs.c.state == S.UNKNOWN.value,
            flow_runs.c.id.in_(running),
        )
        .order_by(flow_runs.c.id)
    )
    back = []
    for row in conn.execute(query).all():
        target = S.CANCELLING if cancel_wanted(conn, row.id) else S.RUNNING
        if apply_transition(conn, row, target, f"agent {agent_label(row)} reconnected", now, flows, retry=False):
            back.append(row.id)
    return back


def crash_unstarted(
    conn: Connection, agent_id: str, running: list[str], cutoff: datetime, now: datetime, flows: FlowStore
) -> list[str]:
    """Unknown runs the agent, heard again, does not run and never started (claimed before ``cutoff``): the
    claim reply was lost in the partition, so nothing runs them; they crash and are retried as usual."""
    query = (
        sa.select(flow_runs)
        .where(
            flow_runs.c.agent_id == agent_id,
            flow_runs.c.state == S.UNKNOWN.value,
            flow_runs.c.started.is_(None),
            flow_runs.c.submitted_at < cutoff,
        )
        .order_by(flow_runs.c.id)
    )
    listed = set(running)
    crashed = []
    for row in conn.execute(query).all():
        if row.id not in listed and apply_transition(conn, row, S.CRASHED, "agent did not start the run", now, flows):
            crashed.append(row.id)
    return crashed


def record_cancel(conn: Connection, run_id: str, now: datetime) -> None:
    """A cancel of an Unknown run: remembered in its history, delivered when its agent reconnects."""
    message = "cancel requested; the agent is silent: it gets the cancel when it reconnects"
    record_history(conn, run_id, S.CANCELLING, now, message)


def settle_late_report(conn: Connection, row: Any, update: StateUpdate, now: datetime, flows: FlowStore) -> bool:
    """A report for attempt ``update.attempt`` of a run that has moved on to a later attempt (or ended as
    lost): True when it was applied or recorded (answer 200), False when it is not a late report.

    (a) the replacement has not been claimed and the report is Success: the run takes the Success;
    (b) otherwise it is recorded in the run's history and the current attempt is left as it is (the
        heartbeat then tells the original agent to stop the run, should it still run it).
    """
    reported = update.attempt
    lost_same_attempt = (
        reported == row.attempt and row.state == S.CRASHED.value and str(row.state_message).startswith(NEVER_BACK)
    )
    if reported is None or not (reported < row.attempt or lost_same_attempt):
        return False
    if row.state == S.SCHEDULED.value and update.state is S.SUCCESS:
        message = (
            f"attempt {reported} reported Success late ({update.message or 'no message'}); "
            f"its replacement, attempt {row.attempt}, had not started and is dropped"
        )
        values = {"attempt": reported, "exit_code": update.exit_code, "pid": update.pid, "token_hash": None}
        return apply_transition(conn, row, S.SUCCESS, message, now, flows, values=values, retry=False)
    if reported == row.attempt:
        message = f"late report of this attempt after it was given up: {update.message or update.state.value}"
    else:
        message = (
            f"late report of attempt {reported} (replaced by attempt {row.attempt}, now {row.state}): "
            f"{update.message or update.state.value}"
        )
    seen = conn.execute(
        sa.select(run_history.c.id).where(
            run_history.c.run_id == row.id,
            run_history.c.state == update.state.value,
            run_history.c.message == message,
        )
    ).first()
    if seen is None:  # a resent late report is recorded once
        record_history(conn, row.id, update.state, now, message)
    return True


class LostRunSweep:
    """Each sweep: replace Unknown runs whose flow and agent allow it, and give up those past the lost timeout.

    ``LostRunSweep(database, flows, settings, clock).sweep() -> ids of runs that left Unknown``
    """

    def __init__(
        self, database: Database, flows: FlowStore, settings: ServerSettings, clock: Callable[[], datetime]
    ) -> None:
        self._db = database
        self._flows = flows
        self._settings = settings
        self._clock = clock

    def sweep(self) -> list[str]:
        now = self._clock()
        query = (
            sa.select(
                flow_runs,
                agents.c.last_heartbeat.label("agent_heartbeat"),
                agents.c.lost_policy.label("agent_policy"),
                *_AGENT_COLUMNS,
            )
            .join(agents, agents.c.id == flow_runs.c.agent_id, isouter=True)
            .where(flow_runs.c.state == S.UNKNOWN.value)
            .order_by(flow_runs.c.id)  # the lock order of every writer of many runs
        )
        moved: list[str] = []
        with self._db.begin() as conn:
            for row in conn.execute(query).all():
                if self._settle(conn, row, now):
                    moved.append(row.id)
        return moved

    def _settle(self, conn: Connection, row: Any, now: datetime) -> bool:
        flow = self._flows.get(row.flow, row.flow_version, conn=conn)
        retry = flow.retry_lost and row.attempt <= flow.retries and not cancel_wanted(conn, row.id)
        window = stop_window(policy_of(row.agent_policy), self._settings.effective_sweep_interval)
        heard = row.agent_heartbeat or row.updated
        if retry and window is not None and now >= heard + timedelta(seconds=window):
            return self._give_up(conn, row, REPLACED_MESSAGE, now, retry=True)
        timeout = self._settings.lost_timeout
        if timeout is not None and now >= row.updated + timedelta(seconds=timeout):
            message = f"{NEVER_BACK} {format_duration(timeout)} (lost timeout)"
            return self._give_up(conn, row, message, now, retry=retry)
        return False

    def _give_up(self, conn: Connection, row: Any, message: str, now: datetime, *, retry: bool) -> bool:
        values = {"lost_token_hash": row.token_hash}  # its agent's late reports are still heard
        if not apply_transition(conn, row, S.CRASHED, message, now, self._flows, values=values, retry=retry):
            return False
        if retry:
            self._mark_output(conn, row, now)
        log.info("run %s (attempt %d): %s%s", row.id, row.attempt, message, "; retried" if retry else "")
        return True

    def _mark_output(self, conn: Connection, row: Any, now: datetime) -> None:
        last = conn.execute(sa.select(sa.func.max(run_logs.c.seq)).where(run_logs.c.run_id == row.id)).scalar()
        seq = (-1 if last is None else int(last)) + LATE_OUTPUT_GAP
        text = (
            f"--- attempt {row.attempt} was replaced after its agent went silent; output of attempt {row.attempt} "
            f"that arrives late is stored above this line, the next attempt's below ---"
        )
        self._db.insert_log_rows(conn, [(row.id, seq, now.timestamp(), "system", text)])
