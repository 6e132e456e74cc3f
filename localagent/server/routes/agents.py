"""``/api/agents``: register, list, heartbeat and claim."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from localagent.api.models import Agent, AgentRegister, ClaimReply, ClaimRequest, Heartbeat, HeartbeatReply
from localagent.server import operations
from localagent.server.auth import require_operator
from localagent.server.http_errors import ERROR_RESPONSES
from localagent.server.services import Services, quick, services

router = APIRouter(
    prefix="/api/agents", tags=["agents"], responses=ERROR_RESPONSES, dependencies=[Depends(require_operator)]
)


@router.post("", summary="Register an agent (taking over its stopped or lost record of the same name and host)")
async def register_agent(request: AgentRegister, svc: Services = Depends(services)) -> Agent:
    return await quick(svc, operations.register_agent, svc, request)


@router.get("", summary="Agents: the latest record of each name and host (all=true: every record)")
async def list_agents(
    history: Annotated[bool, Query(alias="all", description="every record, not only the latest")] = False,
    svc: Services = Depends(services),
) -> list[Agent]:
    return await run_in_threadpool(operations.list_agents, svc, history=history)


@router.post("/{agent_id}/heartbeat", summary="The agent is alive; the reply lists runs to cancel")
async def heartbeat(agent_id: str, beat: Heartbeat, svc: Services = Depends(services)) -> HeartbeatReply:
    return await quick(svc, operations.heartbeat, svc, agent_id, beat)


@router.post("/{agent_id}/disconnect", summary="The agent stops cleanly: it is listed as stopped, not lost")
async def disconnect(agent_id: str, svc: Services = Depends(services)) -> Agent:
    return await quick(svc, operations.disconnect_agent, svc, agent_id)


@router.post("/{agent_id}/claim", summary="Claim up to `slots` due runs; long-polls up to `wait` seconds")
async def claim(agent_id: str, request: ClaimRequest, http: Request, svc: Services = Depends(services)) -> ClaimReply:
    return await operations.claim(svc, agent_id, request, http.is_disconnected)
