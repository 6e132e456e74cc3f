"""The claim long-poll: answer at once when there is work, else sleep until something can have changed.

Nothing re-runs the claim query on a timer while nothing can change. A waiting claim wakes on:

- the notifier (a run created, cancelled or retried through this server process, or on PostgreSQL through
  another server process: :mod:`localagent.server.pg_wakeups`);
- the moment the earliest Scheduled run that is not due yet comes due (``--at`` runs, delayed retries);
- on PostgreSQL only while other processes' changes are not notified here (LISTEN off or its connection
  lost), every ``recheck_interval``;
- a heartbeat of the same agent whose labels or ``run_unlabeled`` differ from this claim's: the claim
  then answers empty at once, so that the agent (reloaded with new labels) can claim with the new ones.

A claim whose client went away hands out nothing: the disconnect is checked on every wake and once more
just before runs claimed after a wait are committed. Usage::

    reply = await poll.claim(agent_id, ClaimRequest(slots=4, wait=10), request.is_disconnected)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool

from localagent.api.models import ClaimReply, ClaimRequest
from localagent.server.agent_labels import LabelSet
from localagent.server.agents_store import AgentStore
from localagent.server.claims import ClaimAttempt, ClaimService
from localagent.server.database import Database
from localagent.server.notify import RUNS, Notifier, agent_topic
from localagent.server.settings import ServerSettings

log = logging.getLogger(__name__)

_DUE_MARGIN = 0.002
"""Seconds added to a wait for a run coming due, so that the re-check does not run a hair too early."""
_DISCONNECT_CHECK_TIMEOUT = 5.0


class ClaimPoll:
    """Long-polls over ``ClaimService.claim_now``."""

    def __init__(
        self,
        claims: ClaimService,
        agents: AgentStore,
        notifier: Notifier,
        database: Database,
        settings: ServerSettings,
        clock: Callable[[], datetime],
    ) -> None:
        self._claims = claims
        self._agents = agents
        self._notifier = notifier
        self._shared = database.shared
        self._settings = settings
        self._clock = clock

    async def claim(
        self, agent_id: str, request: ClaimRequest, is_disconnected: Callable[[], Coroutine[Any, Any, bool]]
    ) -> ClaimReply:
        """Claim now, or wait up to ``request.wait`` (at most half of ``agent_timeout``, so that an agent
        in a long poll is never taken for lost) for work or a new cancel."""
        deadline = time.monotonic() + min(request.wait, self._settings.agent_timeout / 2)
        wanted = LabelSet.of(request.labels, request.run_unlabeled)
        labels_seen = self._agents.label_changes(agent_id)
        still_wanted = _still_wanted(is_disconnected, asyncio.get_running_loop())
        with self._notifier.subscribe(RUNS, agent_topic(agent_id)) as wakeup:
            waited = False
            while True:
                # Before any wait the client has just asked; after one, it may have gone meanwhile.
                check = still_wanted if waited else None
                if self._shared:
                    attempt = await run_in_threadpool(self._claims.claim_now, agent_id, request, check)
                else:
                    # SQLite: inline on the loop like every short call (see services.quick). Nothing else runs
                    # on the loop until it returns, so checking the client just before is as late as checking
                    # inside it; the check inside (which asks the loop) would deadlock with the loop waiting
                    # for the database.
                    if check is not None and await is_disconnected():
                        return ClaimReply()
                    attempt = self._claims.claim_now(agent_id, request, None)
                remaining = deadline - time.monotonic()
                if attempt.reply.runs or attempt.news or remaining <= 0 or self._notifier.closed:
                    return attempt.reply
                await wakeup.wait(self._sleep(remaining, attempt))
                waited = True
                relabelled = self._agents.labels_since(agent_id, labels_seen)
                if relabelled is not None and relabelled != wanted:
                    return ClaimReply(cancel=attempt.reply.cancel)
                if await is_disconnected():
                    return ClaimReply()

    def _sleep(self, remaining: float, attempt: ClaimAttempt) -> float:
        """How long nothing can change for this claim, as far as this process can know."""
        sleep = remaining
        if attempt.next_due is not None:
            sleep = min(sleep, max((attempt.next_due - self._clock()).total_seconds(), 0.0) + _DUE_MARGIN)
        if self._shared and not self._notifier.cross_process:
            sleep = min(sleep, self._settings.recheck_interval)
        return sleep


def _still_wanted(
    is_disconnected: Callable[[], Coroutine[Any, Any, bool]], loop: asyncio.AbstractEventLoop
) -> Callable[[], bool]:
    """A check for worker threads: is the client still connected? (asked on the event loop)."""

    def still_wanted() -> bool:
        try:
            gone = asyncio.run_coroutine_threadsafe(is_disconnected(), loop).result(_DISCONNECT_CHECK_TIMEOUT)
            return not gone
        except Exception as exc:  # the loop is going away: nobody would receive the reply
            log.debug("cannot tell whether a claim's client is connected (%s); handing out nothing", exc)
            return False

    return still_wanted
