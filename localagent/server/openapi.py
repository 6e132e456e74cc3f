"""The OpenAPI document, as served at ``/openapi.json`` and exported to ``schemas/openapi.json``.

Usage::

    write_openapi(Path("schemas/openapi.json"))      # or: localagent server --export-openapi PATH
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from localagent.server.app import create_app
from localagent.server.settings import ServerSettings


def openapi_document() -> dict[str, Any]:
    """The document of a fresh app (built over a throw-away SQLite file)."""
    with tempfile.TemporaryDirectory(prefix="localagent-openapi-") as tmp:
        app = create_app(ServerSettings(database_url=f"sqlite:///{Path(tmp) / 'schema.db'}"))
        try:
            return app.openapi()
        finally:
            app.state.services.database.dispose()


def render_openapi(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def write_openapi(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_openapi(openapi_document()), encoding="utf-8")
