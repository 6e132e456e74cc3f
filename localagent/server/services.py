"""The app's long-lived parts, built once per app and reached from routes through ``Depends(services)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from localagent.server.agents_store import AgentStore
from localagent.server.claim_poll import ClaimPoll
from localagent.server.claims import ClaimService
from localagent.server.database import Database
from localagent.server.flows_store import FlowStore
from localagent.server.logs_store import LogStore
from localagent.server.notify import Notifier
from localagent.server.runs_store import RunStore
from localagent.server.scheduler import Scheduler
from localagent.server.schedules_store import ScheduleStore
from localagent.server.settings import ServerSettings
from localagent.server.waiting import WaitingExplainer

if TYPE_CHECKING:
    from localagent.server.pg_wakeups import PgWakeups

T = TypeVar("T")


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
    schedules: ScheduleStore
    scheduler: Scheduler
    wakeups: PgWakeups | None
    """Wake-ups shared with the other server processes (PostgreSQL with ``listen``), else None."""

    def must_recheck(self) -> bool:
        """Long-polls must re-check the database now and then: other processes' changes are not notified here."""
        return self.database.shared and not self.notifier.cross_process

    @classmethod
    def build(cls, settings: ServerSettings, clock: Callable[[], datetime] = utc_now) -> Services:
        """Open the database (creating the schema) and wire the stores together."""
        database = Database(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            prepared_statements=settings.db_prepared_statements,
        )
        notifier = Notifier()
        wakeups = None
        if database.backend == "postgresql" and settings.listen:
            # Imported here: psycopg comes with the ``postgres`` extra, and a SQLite server (the embedded
            # default) must neither need it nor carry its libraries (libpq, OpenSSL, Kerberos) in memory.
            from localagent.server.pg_wakeups import PgWakeups

            wakeups = PgWakeups(database, notifier, settings.listen_database_url)
        woken: list[Scheduler] = []
        schedules = ScheduleStore(database, clock, changed=lambda: _wake_all(woken))
        flows = FlowStore(database, clock, on_register=schedules.sync)
        scheduler = Scheduler(database, flows, schedules, notifier, clock)
        woken.append(scheduler)
        agents = AgentStore(database, flows, notifier, settings, clock)
        claims = ClaimService(database, flows, clock)
        return cls(
            settings=settings,
            database=database,
            notifier=notifier,
            flows=flows,
            runs=RunStore(database, flows, notifier, clock, WaitingExplainer(settings.agent_timeout)),
            logs=LogStore(database, notifier),
            agents=agents,
            claims=claims,
            claim_poll=ClaimPoll(claims, agents, notifier, database, settings, clock),
            schedules=schedules,
            scheduler=scheduler,
            wakeups=wakeups,
        )


async def quick(svc: Services, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a short storage call (one small transaction) for a request.

    On SQLite it runs right here on the event loop: the database is a local file whose writers are this
    process, a call takes well under a millisecond, and the hop to a worker thread and back costs more than
    the call itself (about 0.6 ms of CPU per request, measured). On a shared database (PostgreSQL: network
    round trips, row locks held by other processes) it runs in the thread pool so the loop never waits.
    Calls that can take long (log batches, long lists) always use the thread pool.
    """
    if svc.database.shared:
        return await run_in_threadpool(call, *args, **kwargs)
    return call(*args, **kwargs)


async def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def _wake_all(schedulers: list[Scheduler]) -> None:
    for scheduler in schedulers:
        scheduler.wake()
