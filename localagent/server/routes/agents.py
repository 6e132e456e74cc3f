"""``/api/agents``: register, list, heartbeat and claim."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from localagent.api.models import Agent, AgentRegister, ClaimReply, ClaimRequest, Heartbeat, HeartbeatReply
from localagent.server import operations
from localagent.server.auth import require_operator
from localagent.server.http_errors import ERROR_RESPONSES
from localagent.server.services import Services, quick, services

router = APIRouter(
    prefix="/api/agents", tags=["agents"], responses=ERROR_RESPONSES, dependencies=[Depends(require_operator)]
)


@router.post("", summary="Register an agent (a new id every time)")
async def register_agent(request: AgentRegister, svc: Services = Depends(services)) -> Agent:
    return await quick(svc, operations.register_agent, svc, request)


@router.get("", summary="Every agent, with `lost` set for silent ones")
async def list_agents(svc: Services = Depends(services)) -> list[Agent]:
    return await run_in_threadpool(operations.list_agents, svc)


@router.post("/{agent_id}/heartbeat", summary="The agent is alive; the reply lists runs to cancel")
async def heartbeat(agent_id: str, beat: Heartbeat, svc: Services = Depends(services)) -> HeartbeatReply:
    return await quick(svc, operations.heartbeat, svc, agent_id, beat)


@router.post("/{agent_id}/claim", summary="Claim up to `slots` due runs; long-polls up to `wait` seconds")
async def claim(agent_id: str, request: ClaimRequest, http: Request, svc: Services = Depends(services)) -> ClaimReply:
    return await operations.claim(svc, agent_id, request, http.is_disconnected)
