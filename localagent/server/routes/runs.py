"""``/api/flow_runs``: create, list, show, cancel and state changes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from localagent.api.models import (
    FlowRun,
    FlowRunBulkCreate,
    FlowRunCreate,
    FlowRunsCreated,
    StateName,
    StateReportResults,
    StateReports,
    StateUpdate,
)
from localagent.server import operations
from localagent.server.auth import Principal, require_operator, require_run_access
from localagent.server.http_errors import ERROR_RESPONSES
from localagent.server.lost_runs import LATE_ATTEMPT
from localagent.server.services import Services, quick, services

router = APIRouter(prefix="/api/flow_runs", tags=["flow runs"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, summary="Create a run of a flow", dependencies=[Depends(require_operator)])
async def create_run(request: FlowRunCreate, svc: Services = Depends(services)) -> FlowRun:
    return await quick(svc, operations.create_run, svc, request)


@router.post(
    "/bulk",
    status_code=201,
    summary="Create many runs in one transaction (a bad item refuses all, naming its index)",
    dependencies=[Depends(require_operator)],
)
async def create_runs(bulk: FlowRunBulkCreate, svc: Services = Depends(services)) -> FlowRunsCreated:
    # Up to 10,000 rows: never on the event loop, even on SQLite.
    return await run_in_threadpool(operations.create_runs, svc, bulk)


@router.get("", summary="Runs, newest first", dependencies=[Depends(require_operator)])
async def list_runs(
    flow: str | None = None,
    state: StateName | None = None,
    agent: Annotated[str | None, Query(description="agent id or name")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    svc: Services = Depends(services),
) -> list[FlowRun]:
    return await run_in_threadpool(
        operations.list_runs, svc, flow=flow, state=state, agent=agent, limit=limit, offset=offset
    )


@router.get(
    "/{run_id}",
    summary="One run with its state history (named by id, unique id prefix or name)",
    dependencies=[Depends(require_run_access)],
)
async def get_run(run_id: str, svc: Services = Depends(services)) -> FlowRun:
    return await quick(svc, operations.get_run, svc, run_id)


@router.post(
    "/{run_id}/cancel",
    summary="Cancel a run (named by id, unique id prefix or name)",
    dependencies=[Depends(require_operator)],
)
async def cancel_run(run_id: str, svc: Services = Depends(services)) -> FlowRun:
    return await quick(svc, operations.cancel_run, svc, run_id)


@router.post(
    "/{run_id}/state",
    summary="Report a run's new state (a repeat of the current state is a no-op)",
)
async def set_state(
    run_id: str,
    update: StateUpdate,
    svc: Services = Depends(services),
    principal: Principal = Depends(require_run_access),
) -> FlowRun:
    if principal.replaced and update.attempt is None:
        # A replaced attempt's token that names no attempt (an older agent, or the next agent reporting what
        # a dead one left): its report is a late one, never applied to the attempt that replaced it.
        update = update.model_copy(update={"attempt": LATE_ATTEMPT})
    return await quick(svc, operations.set_state, svc, run_id, update)


@router.post(
    "/states",
    summary="Report the states of many runs at once (in order, one transaction; each as /{run_id}/state would)",
    dependencies=[Depends(require_operator)],
)
async def set_states(request: StateReports, svc: Services = Depends(services)) -> StateReportResults:
    return await quick(svc, operations.set_states, svc, request.reports)
