"""The server's operations: every request's checks and store calls, written once.

The HTTP routes (``server/routes/``) and the embedded API's in-process client
(``localagent.embedded.inprocess``) both call these functions, so a check can never differ between an
agent talking HTTP and one talking to its own embedded API. Each function takes the app's
:class:`~localagent.server.services.Services`, checks what the wire models allow but the database cannot
hold (a 422 ``ApiRejected`` naming the field, see :mod:`localagent.server.checks`), then calls the store.
They are synchronous (one short transaction each) except the long-polls :func:`claim` and
:func:`read_logs`, which run on the server's event loop.

Usage::

    run = operations.set_state(svc, run_id, StateUpdate(state=StateName.RUNNING, pid=42))
    reply = await operations.claim(svc, agent_id, ClaimRequest(slots=2, wait=10), is_disconnected)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool

from localagent.api.log_batch import LogRow
from localagent.api.models import (
    Agent,
    AgentRegister,
    ClaimReply,
    ClaimRequest,
    Flow,
    FlowRun,
    FlowRunBulkCreate,
    FlowRunCreate,
    FlowRunsCreated,
    FlowSpec,
    Heartbeat,
    HeartbeatReply,
    LogBatchResult,
    StateName,
    StateReport,
    StateReportResults,
    StateUpdate,
)
from localagent.server.checks import delay, int64, state_numbers, utc
from localagent.server.database import Database
from localagent.server.log_wire import parse_batch
from localagent.server.logs_store import LogRows
from localagent.server.notify import logs_topic
from localagent.server.services import Services

# -- flows ---------------------------------------------------------------------------------------------


def register_flow(svc: Services, spec: FlowSpec) -> Flow:
    delay(spec.retry_delay, "body.retry_delay")
    delay(spec.timeout, "body.timeout")
    return svc.flows.register(spec)


def list_flows(svc: Services) -> list[Flow]:
    return svc.flows.latest()


def get_flow(svc: Services, name: str, version: int | None) -> Flow:
    return svc.flows.get(name, version)


# -- runs ----------------------------------------------------------------------------------------------


def create_run(svc: Services, request: FlowRunCreate) -> FlowRun:
    return svc.runs.create(_checked_create(request, "body"))


def create_runs(svc: Services, bulk: FlowRunBulkCreate) -> FlowRunsCreated:
    """Many runs in one transaction, each checked as :func:`create_run` checks one (a 422 naming its index)."""
    requests = [_checked_create(request, f"body.runs.{index}") for index, request in enumerate(bulk.runs)]
    return FlowRunsCreated(runs=svc.runs.create_many(requests))


def _checked_create(request: FlowRunCreate, field: str) -> FlowRunCreate:
    if request.scheduled_start is not None:
        start = utc(request.scheduled_start, f"{field}.scheduled_start")
        request = request.model_copy(update={"scheduled_start": start})
    return request


def list_runs(
    svc: Services, *, flow: str | None, state: StateName | None, agent: str | None, limit: int, offset: int
) -> list[FlowRun]:
    return svc.runs.list_runs(flow=flow, state=state, agent=agent, limit=limit, offset=offset)


def get_run(svc: Services, run_id: str) -> FlowRun:
    return svc.runs.get(run_id)


def cancel_run(svc: Services, run_id: str) -> FlowRun:
    return svc.runs.cancel(run_id)


def set_state(svc: Services, run_id: str, update: StateUpdate) -> FlowRun:
    state_numbers(update)
    return svc.runs.set_state(run_id, update)


def set_states(svc: Services, reports: Sequence[StateReport]) -> StateReportResults:
    for index, report in enumerate(reports):
        state_numbers(report, f"body.reports.{index}")
    return StateReportResults(results=svc.runs.set_states(list(reports)))


# -- logs ----------------------------------------------------------------------------------------------


def append_logs(svc: Services, run_id: str, body: bytes, *, until_final: bool = False) -> LogBatchResult:
    """Store a batch given as the JSON bytes of a ``LogBatch`` (validated in one pass, see ``log_wire``).

    ``until_final``: the caller is the run's own token, whose output is refused once the run has ended.
    """
    rows = parse_batch(run_id, body, nul_free=svc.logs.nul_free)
    return svc.logs.append(run_id, rows, until_final=until_final)


def append_log_rows(svc: Services, run_id: str, rows: list[LogRow]) -> LogBatchResult:
    """Store a batch given as rows ``(run_id, seq, epoch seconds, stream, text)``.

    Rows come from the agent in this process (seqs it numbered, times it took), so only what the database
    cannot hold is mended: a NUL on PostgreSQL becomes U+FFFD, as :func:`append_logs` does.
    """
    if svc.logs.nul_free:
        rows = [row if "\x00" not in row[4] else (*row[:4], Database.without_nul(row[4])) for row in rows]
    return svc.logs.append(run_id, rows)


async def read_logs(svc: Services, run_id: str, *, after: int, limit: int, wait: float) -> LogRows:
    """Lines after ``after``; with ``wait`` > 0, long-poll (on the event loop) until there are some."""
    deadline = time.monotonic() + wait
    while True:
        with svc.notifier.subscribe(logs_topic(run_id)) as wakeup:
            page = await run_in_threadpool(svc.logs.read, run_id, after=after, limit=limit)
            remaining = deadline - time.monotonic()
            if page.rows or page.finished or remaining <= 0 or svc.notifier.closed:
                return page
            # Other server processes' writers wake us only while their notifications reach this process.
            await wakeup.wait(min(remaining, svc.settings.recheck_interval) if svc.must_recheck() else remaining)


# -- agents --------------------------------------------------------------------------------------------


def register_agent(svc: Services, request: AgentRegister) -> Agent:
    int64(request.config_generation, "body.config_generation")
    return svc.agents.register(request)


def list_agents(svc: Services, *, history: bool = False) -> list[Agent]:
    """The latest record of each agent name and host; ``history``: every record."""
    return svc.agents.list_agents(history=history)


def disconnect_agent(svc: Services, agent_id: str) -> Agent:
    """The agent stops cleanly: listed as stopped, not lost."""
    return svc.agents.disconnect(agent_id)


def heartbeat(svc: Services, agent_id: str, beat: Heartbeat) -> HeartbeatReply:
    int64(beat.config_generation, "body.config_generation")
    return svc.agents.heartbeat(agent_id, beat)


async def claim(
    svc: Services, agent_id: str, request: ClaimRequest, is_disconnected: Callable[[], Coroutine[Any, Any, bool]]
) -> ClaimReply:
    """Long-poll for runs (see :mod:`localagent.server.claim_poll`); runs on the server's event loop."""
    return await svc.claim_poll.claim(agent_id, request, is_disconnected)
