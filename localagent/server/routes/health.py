"""``/api/health``: liveness and the storage backend; needs no key."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from localagent import __version__
from localagent.api.models import Health
from localagent.server.services import Services, services

router = APIRouter(tags=["health"])


@router.get("/api/health", summary="The server is up (no key needed)")
async def health(svc: Services = Depends(services)) -> Health:
    return Health(version=__version__, database=svc.database.backend)
