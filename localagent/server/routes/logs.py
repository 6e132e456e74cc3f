"""``/api/flow_runs/{id}/logs``: append numbered batches (a resend is stored once); read and follow."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from localagent.api.models import LogBatch, LogBatchResult, LogPage
from localagent.server.auth import require_run_access
from localagent.server.checks import INT64_MAX, int64, utc
from localagent.server.http_errors import ERROR_RESPONSES
from localagent.server.notify import logs_topic
from localagent.server.services import Services, services

router = APIRouter(
    prefix="/api/flow_runs/{run_id}/logs",
    tags=["logs"],
    responses=ERROR_RESPONSES,
    dependencies=[Depends(require_run_access)],
)


@router.post("", summary="Append a batch of numbered lines")
async def append_logs(run_id: str, batch: LogBatch, svc: Services = Depends(services)) -> LogBatchResult:
    lines = []
    for index, line in enumerate(batch.lines):
        int64(line.seq, f"body.lines.{index}.seq")
        lines.append(line.model_copy(update={"time": utc(line.time, f"body.lines.{index}.time")}))
    return await run_in_threadpool(svc.logs.append, run_id, lines)


@router.get("", summary="Lines after a cursor, oldest first; wait > 0 long-polls for new ones")
async def read_logs(
    run_id: str,
    after: Annotated[int, Query(ge=-1, le=INT64_MAX)] = -1,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    wait: Annotated[float, Query(ge=0, le=300)] = 0.0,
    svc: Services = Depends(services),
) -> LogPage:
    deadline = time.monotonic() + wait
    while True:
        with svc.notifier.subscribe(logs_topic(run_id)) as wakeup:
            page = await run_in_threadpool(svc.logs.read, run_id, after=after, limit=limit)
            remaining = deadline - time.monotonic()
            if page.lines or page.finished or remaining <= 0 or svc.notifier.closed:
                return page
            await wakeup.wait(min(remaining, svc.settings.recheck_interval))
