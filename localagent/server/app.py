"""The FastAPI application.

Usage::

    app = create_app(ServerSettings(database_url="sqlite:////tmp/la.db"))
    uvicorn.run(app)

The database is opened (and its schema created) by ``create_app`` itself, so a bad URL fails there, in
the caller's thread; the sweep runs while the app is served (lifespan).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from localagent import __version__
from localagent.api.models import LogBatch
from localagent.server.http_errors import install_error_handlers
from localagent.server.routes import agents, flows, health, logs, runs, schedules
from localagent.server.services import Services
from localagent.server.settings import ServerSettings
from localagent.server.sweeper import Sweeper
from localagent.server.web import install_web

DESCRIPTION = """The orchestration API of localagent: flows, flow runs, their logs, and the agents that claim
and run them. Every endpoint but `GET /api/health` needs `Authorization: Bearer <API key or run token>`
when the server has API keys."""


def create_app(settings: ServerSettings) -> FastAPI:
    svc = Services.build(settings)
    sweeper = Sweeper(svc.agents, settings.effective_sweep_interval)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if svc.wakeups is not None:
            svc.wakeups.start()
        sweeper.start()
        svc.scheduler.start()
        try:
            yield
        finally:
            svc.notifier.close()
            svc.scheduler.stop()
            sweeper.stop()
            if svc.wakeups is not None:
                svc.wakeups.stop()
            svc.database.dispose()

    app = FastAPI(
        title="localagent orchestration API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = svc
    app.state.sweeper = sweeper
    install_error_handlers(app)
    for module in (health, flows, schedules, runs, logs, agents):
        app.include_router(module.router)
    install_web(app)  # the pages at / (after the API, whose /api/... paths they never shadow)
    app.openapi = _with_body_models(app.openapi, LogBatch)  # type: ignore[method-assign]
    return app


def _with_body_models(build: Callable[[], dict[str, Any]], *models: type[LogBatch]) -> Callable[[], dict[str, Any]]:
    """FastAPI documents only the models of declared parameters; the log endpoint reads its body itself
    (``routes.logs``), so its ``LogBatch`` component is added here, exactly as FastAPI would render it."""
    document: dict[str, Any] | None = None

    def openapi() -> dict[str, Any]:
        nonlocal document
        if document is None:
            built = build()
            schemas = built.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, definition in schema.pop("$defs", {}).items():
                    schemas.setdefault(name, definition)
                schemas.setdefault(model.__name__, schema)
            built["components"]["schemas"] = dict(sorted(schemas.items()))
            document = built
        return document

    return openapi
