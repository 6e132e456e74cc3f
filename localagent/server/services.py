"""The app's long-lived parts, built once per app and reached from routes through ``Depends(services)``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from fastapi import Request

from localagent.server.agents_store import AgentStore
from localagent.server.claim_poll import ClaimPoll
from localagent.server.claims import ClaimService
from localagent.server.database import Database
from localagent.server.flows_store import FlowStore
from localagent.server.logs_store import LogStore
from localagent.server.notify import Notifier
from localagent.server.runs_store import RunStore
from localagent.server.settings import ServerSettings


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Services:
    settings: ServerSettings
    database: Database
    notifier: Notifier
    flows: FlowStore
    runs: RunStore
    logs: LogStore
    agents: AgentStore
    claims: ClaimService
    claim_poll: ClaimPoll

    @classmethod
    def build(cls, settings: ServerSettings) -> Services:
        """Open the database (creating the schema) and wire the stores together."""
        database = Database(settings.database_url)
        notifier = Notifier()
        flows = FlowStore(database, utc_now)
        agents = AgentStore(database, flows, notifier, settings, utc_now)
        claims = ClaimService(database, flows, utc_now)
        return cls(
            settings=settings,
            database=database,
            notifier=notifier,
            flows=flows,
            runs=RunStore(database, flows, notifier, utc_now),
            logs=LogStore(database, notifier),
            agents=agents,
            claims=claims,
            claim_poll=ClaimPoll(claims, agents, notifier, database, settings, utc_now),
        )


async def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc
