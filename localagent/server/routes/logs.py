"""``/api/flow_runs/{id}/logs``: append numbered batches (a resent seq is stored once); read and follow.

Both endpoints skip FastAPI's per-line models (see ``log_wire``); the OpenAPI document still describes the
body as ``LogBatch`` and the page as ``LogPage``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from localagent.api.models import LogBatchResult, LogPage
from localagent.server import operations
from localagent.server.auth import require_run_access
from localagent.server.checks import INT64_MAX
from localagent.server.http_errors import ERROR_RESPONSES, require_json
from localagent.server.log_wire import render_page
from localagent.server.services import Services, services

router = APIRouter(
    prefix="/api/flow_runs/{run_id}/logs",
    tags=["logs"],
    responses=ERROR_RESPONSES,
    dependencies=[Depends(require_run_access)],
)

LOG_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LogBatch"}}},
    }
}
"""The request body as FastAPI would document a ``LogBatch`` parameter (``app`` adds the component)."""


@router.post("", summary="Append a batch of numbered lines", openapi_extra=LOG_BATCH_BODY)
async def append_logs(run_id: str, request: Request, svc: Services = Depends(services)) -> LogBatchResult:
    require_json(request)
    return await run_in_threadpool(operations.append_logs, svc, run_id, await request.body())


@router.get(
    "",
    summary="Lines after a cursor, oldest first; wait > 0 long-polls for new ones",
    response_model=LogPage,
)
async def read_logs(
    run_id: str,
    after: Annotated[int, Query(ge=-1, le=INT64_MAX)] = -1,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    wait: Annotated[float, Query(ge=0, le=300)] = 0.0,
    svc: Services = Depends(services),
) -> Response:
    page = await operations.read_logs(svc, run_id, after=after, limit=limit, wait=wait)
    body = render_page(page.rows, next_after=page.next_after, finished=page.finished)
    return Response(content=body, media_type="application/json")
