"""The FastAPI application.

Usage::

    app = create_app(ServerSettings(database_url="sqlite:////tmp/la.db"))
    uvicorn.run(app)

The database is opened (and its schema created) by ``create_app`` itself, so a bad URL fails there, in
the caller's thread; the sweep runs while the app is served (lifespan).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from localagent import __version__
from localagent.server.http_errors import install_error_handlers
from localagent.server.routes import agents, flows, health, logs, runs
from localagent.server.services import Services
from localagent.server.settings import ServerSettings
from localagent.server.sweeper import Sweeper

DESCRIPTION = """The orchestration API of localagent: flows, flow runs, their logs, and the agents that claim
and run them. Every endpoint but `GET /api/health` needs `Authorization: Bearer <API key or run token>`
when the server has API keys."""


def create_app(settings: ServerSettings) -> FastAPI:
    svc = Services.build(settings)
    sweeper = Sweeper(svc.agents, settings.effective_sweep_interval)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        sweeper.start()
        try:
            yield
        finally:
            svc.notifier.close()
            sweeper.stop()
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
    for module in (health, flows, runs, logs, agents):
        app.include_router(module.router)
    return app
