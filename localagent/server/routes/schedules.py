"""``/api/flows/{name}/schedules`` and ``/api/schedules``: schedules with their next fire times; pause, resume."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from localagent.api.schedule_models import Schedule
from localagent.server.auth import require_operator
from localagent.server.http_errors import ERROR_RESPONSES
from localagent.server.services import Services, services

router = APIRouter(tags=["schedules"], responses=ERROR_RESPONSES, dependencies=[Depends(require_operator)])


@router.get("/api/schedules", summary="Every flow's schedules, with the next five fire times")
async def list_schedules(svc: Services = Depends(services)) -> list[Schedule]:
    return await run_in_threadpool(svc.schedules.all)


@router.get("/api/flows/{name}/schedules", summary="A flow's schedules, with the next five fire times")
async def flow_schedules(name: str, svc: Services = Depends(services)) -> list[Schedule]:
    await run_in_threadpool(svc.flows.get, name)  # 404 for an unknown flow rather than an empty list
    return await run_in_threadpool(svc.schedules.for_flow, name)


@router.post("/api/flows/{name}/schedules/{schedule}/pause", summary="Pause a schedule: it makes no runs")
async def pause_schedule(name: str, schedule: str, svc: Services = Depends(services)) -> Schedule:
    return await run_in_threadpool(svc.schedules.set_paused, name, schedule, True)


@router.post(
    "/api/flows/{name}/schedules/{schedule}/resume",
    summary="Resume a schedule from its next fire time after now (times passed while paused are not caught up)",
)
async def resume_schedule(name: str, schedule: str, svc: Services = Depends(services)) -> Schedule:
    return await run_in_threadpool(svc.schedules.set_paused, name, schedule, False)
