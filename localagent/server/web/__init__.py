"""The web view: server-rendered pages over the same stores as the API, mounted at ``/`` by ``create_app``.

Usage::

    install_web(app)      # pages at /, /runs/{id}, /flows, /agents, /login; assets at /static

Pages are Jinja2 templates (``templates/``); the live parts are one plain script (``static/live.js``). Every
asset ships in the package: no CDN, no build step. ``security`` says who may see what.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from localagent.server.web import actions, pages
from localagent.server.web.security import Forbidden, LoginRequired, secure

STATIC_DIR = Path(__file__).parent / "static"


class _StaticAssets(StaticFiles):
    """The package's CSS and JS, never sniffed as another type, cached for an hour (URLs carry the version)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"cache-control", b"public, max-age=3600"))
                message["headers"] = headers
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


def install_web(app: FastAPI) -> None:
    app.include_router(pages.router)
    app.include_router(actions.router)
    app.mount("/static", _StaticAssets(directory=STATIC_DIR), name="static")

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, _exc: LoginRequired) -> Response:
        return actions.login_redirect(request)

    @app.exception_handler(Forbidden)
    async def _forbidden(_request: Request, exc: Forbidden) -> Response:
        return secure(PlainTextResponse(str(exc), status_code=403))
