"""``/api/flows``: register (new version only on change), list the latest of each, show one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from localagent.api.models import Flow, FlowSpec
from localagent.server import operations
from localagent.server.auth import require_operator
from localagent.server.http_errors import ERROR_RESPONSES
from localagent.server.services import Services, services

router = APIRouter(
    prefix="/api/flows", tags=["flows"], responses=ERROR_RESPONSES, dependencies=[Depends(require_operator)]
)


@router.post("", summary="Register a flow (a new version only when the spec changed)")
async def register_flow(spec: FlowSpec, svc: Services = Depends(services)) -> Flow:
    return await run_in_threadpool(operations.register_flow, svc, spec)


@router.get("", summary="The latest version of every flow")
async def list_flows(svc: Services = Depends(services)) -> list[Flow]:
    return await run_in_threadpool(operations.list_flows, svc)


@router.get("/{name}", summary="One flow: its latest version, or ?version=N")
async def get_flow(
    name: str,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    svc: Services = Depends(services),
) -> Flow:
    return await run_in_threadpool(operations.get_flow, svc, name, version)
