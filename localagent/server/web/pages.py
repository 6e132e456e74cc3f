"""The pages: runs list (``/``), one run (``/runs/{id}``), flows and schedules (``/flows``), fleet (``/agents``).

Each page is rendered whole on the server. Its live parts (elements with ``data-live``) are refreshed by
``static/live.js``, which fetches the same URL again and swaps those elements in; a run's output follows
through the API's own long-poll (``GET /api/flow_runs/{id}/logs?wait=``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from localagent.api.models import Flow, FlowRun
from localagent.api.schedule_models import Schedule
from localagent.config.render import MASK, SECRET_ENV_NAME
from localagent.errors import ApiNotFound
from localagent.server.services import Services
from localagent.server.tables import flow_runs
from localagent.server.web.fleet import build_fleet
from localagent.server.web.output import WindowRequest, raw_output, read_window
from localagent.server.web.render import render
from localagent.server.web.run_list import SCAN_WINDOW, BadCursor, RunFilter, known_state, read_run_page
from localagent.server.web.security import require_viewer, secure

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
RECENT_RUNS = 5

Text = Annotated[str, Query(max_length=200)]


@router.get("/", response_class=HTMLResponse)
async def runs_page(
    request: Request,
    state: Text = "",
    flow: Text = "",
    label: Text = "",
    agent: Text = "",
    before: Text | None = None,
    after: Text | None = None,
    svc: Services = Depends(require_viewer),
) -> HTMLResponse:
    where = RunFilter(state=known_state(state), flow=flow.strip(), label=label.strip(), agent=agent.strip())
    try:
        page = await run_in_threadpool(read_run_page, svc.database, where, before=before, after=after, limit=PAGE_SIZE)
    except BadCursor as exc:
        return render(request, "error.html", status_code=400, title="Bad page link", error=str(exc))
    flow_names = await run_in_threadpool(_flow_names, svc)
    return render(
        request,
        "runs.html",
        nav="runs",
        page=page,
        where=where,
        flow_names=flow_names,
        paged=before is not None or after is not None,
        scan_window=SCAN_WINDOW,
    )


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_page(
    request: Request,
    run_id: str,
    line: Annotated[int | None, Query(ge=1, le=2**62, description="1-based line number")] = None,
    q: Text = "",
    svc: Services = Depends(require_viewer),
) -> HTMLResponse:
    try:
        run = await run_in_threadpool(svc.runs.get, run_id)
    except ApiNotFound as exc:
        return render(request, "error.html", status_code=404, title="No such run", error=str(exc))
    flow = await run_in_threadpool(_flow_version, svc, run)
    # ``live=1`` is live.js refreshing the summary: the output windows are not needed for that.
    output = None
    if request.query_params.get("live") != "1":
        output = await run_in_threadpool(
            read_window, svc.database, run.id, WindowRequest(line=None if line is None else line - 1, search=q)
        )
    return render(
        request,
        "run.html",
        nav="runs",
        run=run,
        flow=flow,
        env=masked_env(flow.run_config.env) if flow is not None else {},
        output=output,
        search=q,
        waiting=waiting_reason(run),
    )


@router.get("/runs/{run_id}/output.txt")
async def raw_output_download(run_id: str, svc: Services = Depends(require_viewer)) -> StreamingResponse:
    run = await run_in_threadpool(svc.runs.get, run_id)
    filename = "".join(c if c.isalnum() or c in "-_." else "_" for c in run.name)[:100] or run.id
    response = StreamingResponse(
        iterate_in_threadpool(raw_output(svc.database, run.id)),
        media_type="text/plain; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}.txt"'},
    )
    secure(response)
    return response


@router.get("/flows", response_class=HTMLResponse)
async def flows_page(request: Request, svc: Services = Depends(require_viewer)) -> HTMLResponse:
    flows, recent = await run_in_threadpool(_flows_with_recent_runs, svc)
    by_flow = await run_in_threadpool(_schedules_by_flow, svc)
    return render(request, "flows.html", nav="flows", flows=flows, recent=recent, schedules=by_flow)


@router.get("/agents", response_class=HTMLResponse)
async def agents_page(request: Request, svc: Services = Depends(require_viewer)) -> HTMLResponse:
    agents = await run_in_threadpool(svc.agents.list_agents)
    fleet = build_fleet(agents, datetime.now(timezone.utc))
    return render(request, "agents.html", nav="agents", fleet=fleet, timeout=svc.settings.agent_timeout)


def masked_env(env: dict[str, str]) -> dict[str, str]:
    """A flow's run env for display: values of secret-looking names (``*TOKEN*``, ``*PASSWORD*``...) masked."""
    return {name: MASK if SECRET_ENV_NAME.search(name) else value for name, value in sorted(env.items())}


def waiting_reason(run: FlowRun) -> str:
    """Why a Scheduled run still waits (``FlowRun.waiting``, computed by the store when the run is read)."""
    if run.waiting is None:
        return ""
    return run.waiting.message or run.waiting.reason


def _flow_version(svc: Services, run: FlowRun) -> Flow | None:
    try:
        return svc.flows.get(run.flow, run.flow_version)
    except ApiNotFound:
        return None


def _flow_names(svc: Services) -> list[str]:
    return [flow.name for flow in svc.flows.latest()]


_RECENT = (
    sa.select(flow_runs.c.id, flow_runs.c.name, flow_runs.c.state, flow_runs.c.created)
    .where(flow_runs.c.flow == sa.bindparam("flow"))
    # created alone (no id tie-break): the (flow, created) index then yields the rows in order, unsorted.
    .order_by(flow_runs.c.created.desc())
    .limit(RECENT_RUNS)
)


def _schedules_by_flow(svc: Services) -> dict[str, list[Schedule]]:
    """Every schedule with its next fire times, computed by the store exactly as ``GET /api/schedules`` does."""
    by_flow: dict[str, list[Schedule]] = {}
    for schedule in svc.schedules.all():
        by_flow.setdefault(schedule.flow, []).append(schedule)
    return by_flow


def _flows_with_recent_runs(svc: Services) -> tuple[list[Flow], dict[str, list[Any]]]:
    flows = svc.flows.latest()
    recent: dict[str, list[Any]] = {}
    with svc.database.connect() as conn:  # one indexed read per flow on ix_flow_runs_flow (flow, created)
        for flow in flows:
            recent[flow.name] = list(conn.execute(_RECENT, {"flow": flow.name}).all())
    return flows, recent
