"""What a page can do: log in and out, cancel a run, run it again, run a flow now, pause or resume a schedule.

Every action is a POST of an ordinary HTML form, checked by ``require_same_origin`` (see ``security``), and
answers with a redirect (303) to the page that shows the result, or the page again with the error.
Forms are read here (``application/x-www-form-urlencoded``), so the server needs no multipart package.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from localagent.api.models import FlowRunCreate
from localagent.errors import ApiRejected
from localagent.server.auth import SESSION_COOKIE, is_api_key
from localagent.server.http_errors import describe_validation_errors
from localagent.server.services import Services
from localagent.server.web.render import render
from localagent.server.web.security import LoginRequired, has_session, require_same_origin, safe_next, secure

router = APIRouter(include_in_schema=False)
MAX_FORM_BYTES = 256 * 1024
SESSION_DAYS = 30


async def read_form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {name: values[-1] for name, values in fields.items()}


def see_other(path: str) -> Response:
    return secure(RedirectResponse(path, status_code=303))


@router.get("/login")
async def login_page(request: Request, next: str = "/") -> Response:
    if not request.app.state.services.settings.api_keys:
        return see_other(safe_next(next))  # nothing to log in to
    return render(request, "login.html", target=safe_next(next))


@router.post("/login")
async def log_in(request: Request, svc: Services = Depends(require_same_origin)) -> Response:
    form = await read_form(request)
    key, target = form.get("key", "").strip(), safe_next(form.get("next"))
    keys = svc.settings.api_keys
    if not keys:
        return see_other(target)
    if not key or not is_api_key(keys, key):
        return render(request, "login.html", status_code=401, target=target, error="That key is not accepted.")
    response = see_other(target)
    response.set_cookie(
        SESSION_COOKIE,
        key,
        max_age=SESSION_DAYS * 86400,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
async def log_out(_request: Request, _svc: Services = Depends(require_same_origin)) -> Response:
    response = see_other("/login")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


async def _operator(request: Request, svc: Services = Depends(require_same_origin)) -> Services:
    if not has_session(request, svc):
        raise LoginRequired()
    return svc


@router.post("/runs/{run_id}/cancel")
async def cancel_run(run_id: str, request: Request, svc: Services = Depends(_operator)) -> Response:
    try:
        await run_in_threadpool(svc.runs.cancel, run_id)
    except ApiRejected as exc:
        return _action_failed(request, "Cannot cancel", exc.detail, exc.status_code)
    return see_other(f"/runs/{run_id}")


@router.post("/runs/{run_id}/rerun")
async def run_again(run_id: str, request: Request, svc: Services = Depends(_operator)) -> Response:
    """A new run of the same flow version with the same parameters and labels."""
    try:
        run = await run_in_threadpool(svc.runs.get, run_id)
        again = FlowRunCreate(flow=run.flow, version=run.flow_version, parameters=run.parameters, labels=run.labels)
        created = await run_in_threadpool(svc.runs.create, again)
    except ApiRejected as exc:
        return _action_failed(request, "Cannot run again", exc.detail, exc.status_code)
    return see_other(f"/runs/{created.id}")


@router.post("/flows/{name}/run")
async def run_flow_now(name: str, request: Request, svc: Services = Depends(_operator)) -> Response:
    form = await read_form(request)
    try:
        parameters = _parameters(form.get("parameters", ""))
        labels = [label.strip() for label in form.get("labels", "").split(",") if label.strip()]
        request_body = FlowRunCreate(flow=name, parameters=parameters, labels=labels, name=form.get("name") or None)
        created = await run_in_threadpool(svc.runs.create, request_body)
    except ValueError as exc:
        message = describe_validation_errors(exc.errors()) if isinstance(exc, ValidationError) else str(exc)
        return _action_failed(request, f"Cannot run {name}", message, 422, back="/flows")
    except ApiRejected as exc:
        return _action_failed(request, f"Cannot run {name}", exc.detail, exc.status_code, back="/flows")
    return see_other(f"/runs/{created.id}")


@router.post("/flows/{name}/schedules/{schedule}/pause")
async def pause_schedule(name: str, schedule: str, request: Request, svc: Services = Depends(_operator)) -> Response:
    return await _set_paused(request, svc, name, schedule, paused=True)


@router.post("/flows/{name}/schedules/{schedule}/resume")
async def resume_schedule(name: str, schedule: str, request: Request, svc: Services = Depends(_operator)) -> Response:
    return await _set_paused(request, svc, name, schedule, paused=False)


async def _set_paused(request: Request, svc: Services, name: str, schedule: str, *, paused: bool) -> Response:
    """The store's own pause/resume, as ``POST /api/flows/{name}/schedules/{schedule}/pause`` (and /resume)."""
    try:
        await run_in_threadpool(svc.schedules.set_paused, name, schedule, paused)
    except ApiRejected as exc:
        verb = "pause" if paused else "resume"
        return _action_failed(request, f"Cannot {verb} {name}/{schedule}", exc.detail, exc.status_code, back="/flows")
    return see_other(f"/flows#schedule-{quote(name, safe='')}-{quote(schedule, safe='')}")


def _parameters(text: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"parameters: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from exc
    if not isinstance(value, dict):
        raise ValueError('parameters: expected a JSON object such as {"name": "value"}')
    return value


def _action_failed(request: Request, title: str, detail: str, status: int, back: str | None = None) -> Response:
    back = back or safe_next(request.headers.get("referer", "").partition(request.headers.get("host", ""))[2])
    return render(request, "error.html", status_code=status, title=title, error=detail, back=back)


def login_redirect(request: Request) -> Response:
    """The answer to ``LoginRequired``: the login form for a page, its path kept to come back to."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        target = "/"
    return see_other("/login?" + urlencode({"next": target}))
