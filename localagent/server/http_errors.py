"""Every error answer is ``{"detail": "<one readable string>"}``; nothing a client sends yields a 500.

FastAPI's list of validation errors becomes one line naming each field, e.g.
``body.slots: Input should be greater than or equal to 0``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from localagent.api.models import ErrorBody
from localagent.errors import ApiRejected, StorageError
from localagent.server.database import InvalidData

log = logging.getLogger(__name__)

_MAX_LISTED = 5

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (401, "missing or invalid API key or run token"),
        (403, "a run token used outside its own run"),
        (404, "no such flow, run or agent"),
        (409, "conflicts with the current state"),
        (422, "malformed request; the detail names the field"),
        (503, "the database is unavailable"),
    )
}
"""Documented on every route so that the OpenAPI document describes the error bodies we really send."""


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """``[{"loc": ("body", "slots"), "msg": ...}, ...]`` -> ``"body.slots: ...; query.limit: ..."``."""
    parts = [_describe_one(error) for error in errors[:_MAX_LISTED]]
    if len(errors) > _MAX_LISTED:
        parts.append(f"and {len(errors) - _MAX_LISTED} more problems")
    return "; ".join(parts) or "invalid request"


def _describe_one(error: Any) -> str:
    loc = [str(part) for part in error.get("loc", ())]
    kind = error.get("type", "")
    if kind == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "")
        position = f" at position {loc[1]}" if len(loc) > 1 else ""
        return f"body: invalid JSON{position}" + (f": {reason}" if reason else "")
    if kind == "missing" and loc == ["body"]:
        return "body: a JSON body is required"
    if loc == ["body"] and kind in ("model_attributes_type", "dict_type"):
        return "body: expected a JSON object (send it with Content-Type: application/json)"
    where = ".".join(loc) or "request"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")  # our validators' own words
    return f"{where}: {message}"


def require_json(request: Request) -> None:
    """For endpoints that read their body themselves: refuse a non-JSON content type as FastAPI would."""
    content_type = request.headers.get("content-type")
    if content_type is None:
        return
    subtype = content_type.partition(";")[0].strip().lower().rpartition("/")[2]
    if subtype != "json" and not subtype.endswith("+json"):
        raise RequestValidationError([{"type": "model_attributes_type", "loc": ("body",), "msg": "not JSON"}])


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, describe_validation_errors(exc.errors()))

    @app.exception_handler(ApiRejected)
    async def _rejected(_request: Request, exc: ApiRejected) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return _error(exc.status_code, exc.detail, headers)

    @app.exception_handler(InvalidData)
    async def _invalid(_request: Request, exc: InvalidData) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(StorageError)
    async def _storage(_request: Request, exc: StorageError) -> JSONResponse:
        log.warning("storage error: %s", exc)
        return _error(503, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = str(exc.detail)
        headers = getattr(exc, "headers", None)
        status = exc.status_code
        if status == 400 and "parsing the body" in detail:
            status, detail = 422, "body: not a readable JSON document (expected UTF-8 JSON)"
        if status == 405:
            # Starlette names only the methods of the first route with this path; list them all.
            headers = {"Allow": ", ".join(_allowed_methods(request))}
        return _error(status, detail, headers)


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, APIRoute) and route.path_regex.match(request.url.path):
            methods |= route.methods or set()
    return sorted(methods)


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail}, headers=headers)
