"""Sending the state reports of many runs to one API together (``POST /api/flow_runs/states``).

At high run rates, one request per state change is what bounds the agent (and, in embedded mode, the
server in the same process): each costs an HTTP round trip and a commit. A :class:`StateBatcher` has one
sender thread per API: reports queued while a batch is on the wire go out together in the next one, so
there is no added delay when the agent is quiet, and when it is busy at most one request per ``LINGER``
(25 ms) carrying everything that came due meanwhile; a run's final state that is alone in the queue is not
held back by that window (a short run ends as soon as it can).

A run's reports stay in order because the run waits for each ticket before queueing the next. While the
API is unreachable (or answers 5xx) the batch is resent with back-off; a resend is harmless
(the server treats a repeated report as a no-op). A report the API refuses (404, 409) is logged and not
retried. When the batch endpoint itself is refused (401/403: the agent's key no longer works there; 404/405:
an API without it) the tickets come back as ``FALLBACK`` and each run reports on its own with its run
token, as before batching existed.

Usage::

    batcher = StateBatcher(api)             # the agent-key client of the API that handed the runs out
    ticket = batcher.submit(run_id, StateUpdate(state=StateName.RUNNING, pid=42), give_up)
    ticket.wait()                           # ticket.outcome: DELIVERED, REFUSED, FALLBACK or GIVEN_UP
    batcher.close()
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from localagent.agent.retry import Backoff
from localagent.api.models import StateReport, StateReportResults, StateUpdate
from localagent.errors import ApiRejected, ApiUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable

    from localagent.agent.retry import GiveUp
    from localagent.api.port import StateBatchChannel

log = logging.getLogger("localagent.run")

MAX_BATCH = 500
MAX_BACKOFF = 5.0
LINGER = 0.025  # at most 40 batches a second: when busy, reports wait up to this long to share a request
IDLE_EXIT = 30.0  # the sender thread ends after this long with nothing to send (a new report restarts it)

DELIVERED = "delivered"
REFUSED = "refused"
FALLBACK = "fallback"
GIVEN_UP = "given up"


class Ticket:
    """One queued report; :meth:`wait` returns once the batcher is done with it."""

    __slots__ = ("_done", "_on_done", "detail", "give_up", "outcome", "run_id", "update")

    def __init__(
        self, run_id: str, update: StateUpdate, give_up: GiveUp, on_done: Callable[[Ticket], None] | None = None
    ) -> None:
        self.run_id = run_id
        self.update = update
        self.give_up = give_up
        self.outcome = ""
        self.detail = ""
        self._done = threading.Event()
        self._on_done = on_done

    def finish(self, outcome: str, detail: str = "") -> None:
        self.outcome, self.detail = outcome, detail
        self._done.set()
        if self._on_done is not None:
            try:
                self._on_done(self)
            except Exception:
                log.exception("run %s: handling the outcome of state %s failed", self.run_id, self.update.state.value)

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def report(self) -> StateReport:
        update = self.update
        return StateReport(
            run_id=self.run_id,
            state=update.state,
            message=update.message,
            pid=update.pid,
            exit_code=update.exit_code,
            attempt=update.attempt,
        )


class StateBatcher:
    """Delivers queued state reports of many runs to one API, a batch per request (thread-safe)."""

    def __init__(self, api: StateBatchChannel, *, initial_backoff: float = 0.5, max_batch: int = MAX_BATCH) -> None:
        self._api = api
        self._initial_backoff = initial_backoff
        self._max_batch = max_batch
        self._changed = threading.Condition()
        self._queue: deque[Ticket] = deque()
        self._thread: threading.Thread | None = None
        self._idle = False  # the sender waits for work (while it lingers or sends, a wake-up is wasted)
        self._closed = threading.Event()
        self._unsupported = ""  # why the API cannot take batches, once it said so

    def submit(
        self, run_id: str, update: StateUpdate, give_up: GiveUp, on_done: Callable[[Ticket], None] | None = None
    ) -> Ticket:
        """Queue ``update`` for ``run_id``; the ticket tells when and how it was delivered.

        ``on_done(ticket)``, if given, is called once the outcome is known, on the sender thread (or on this
        one, when the ticket comes back at once): it must be quick and must not wait for the batcher.
        """
        ticket = Ticket(run_id, update, give_up, on_done)
        with self._changed:
            refused = self._unsupported or ("the batcher is closed" if self._closed.is_set() else "")
            if not refused:
                self._queue.append(ticket)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._send_loop, name="state-batch", daemon=True)
                    self._thread.start()
                elif self._idle:
                    self._changed.notify()
        if refused:
            ticket.finish(FALLBACK, refused)
        return ticket

    def close(self) -> None:
        """Stop sending; reports still queued come back as ``FALLBACK`` (their runs report them alone)."""
        with self._changed:
            self._closed.set()
            left = list(self._queue)
            self._queue.clear()
            self._changed.notify_all()
        for ticket in left:
            ticket.finish(FALLBACK, "the batcher is closed")

    # -- the sender thread ---------------------------------------------------------------------------

    def _send_loop(self) -> None:
        last_sent = -LINGER
        while True:
            with self._changed:
                if not self._queue and not self._closed.is_set():
                    self._idle = True
                    self._changed.wait(IDLE_EXIT)
                    self._idle = False
                if not self._queue:
                    self._thread = None
                    return
                # Busy (a batch went out moments ago): gather for the rest of LINGER, so the request rate
                # stays bounded. Quiet: send at once. A run's final state alone in the queue leaves at once
                # too: a short run's end would otherwise wait out the window its Running report opened
                # (``true``: final 25 ms after Running); under load the queue holds more and the window holds.
                while (
                    not self._closed.is_set()
                    and not self._lone_final_state()
                    and (remaining := last_sent + LINGER - time.monotonic()) > 0
                ):
                    self._changed.wait(remaining)
                last_sent = time.monotonic()
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), self._max_batch))]
            try:
                self._send(batch)
            except Exception as exc:  # never strand a waiting run: it falls back to reporting alone
                log.exception("sending %d state reports failed in the agent", len(batch))
                for ticket in batch:
                    if not ticket.wait(0):
                        ticket.finish(FALLBACK, str(exc))

    def _lone_final_state(self) -> bool:
        """Only one report waits and it is a run's final state (lock held)."""
        return len(self._queue) == 1 and self._queue[0].update.state.is_final

    def _send(self, batch: list[Ticket]) -> None:
        backoff = Backoff(first=self._initial_backoff, cap=MAX_BACKOFF)
        warned = False
        while True:
            live = []
            for ticket in batch:
                if ticket.give_up.is_set():
                    log.error(
                        "run %s: state %s was not delivered (API unreachable)", ticket.run_id, ticket.update.state.value
                    )
                    ticket.finish(GIVEN_UP)
                else:
                    live.append(ticket)
            if not live:
                return
            try:
                reply = self._api.set_states([ticket.report() for ticket in live])
            except ApiUnavailable as exc:
                problem = str(exc)
            except ApiRejected as exc:
                if exc.status_code >= 500:
                    problem = str(exc)
                else:
                    self._refuse_batches(exc, live)
                    return
            else:
                self._settle(live, reply)
                if warned:
                    log.info("%d state report(s) delivered after the API came back", len(live))
                return
            if not warned:
                log.warning("cannot report %d run state(s) yet, retrying: %s", len(live), problem)
                warned = True
            # Sleep the back-off, but wake for the first run whose delivery grace ends meanwhile.
            delay = min([backoff.next_delay(), *(ticket.give_up.remaining() for ticket in live)])
            if self._closed.wait(delay):
                for ticket in live:
                    ticket.finish(FALLBACK, "the batcher is closed")
                return

    def _refuse_batches(self, exc: ApiRejected, live: list[Ticket]) -> None:
        """The API refused the batch request itself: every run reports alone (and, for good, when it lacks it)."""
        if exc.status_code in (404, 405):
            with self._changed:
                self._unsupported = f"the API does not take batched state reports ({exc})"
            log.info("%s; runs report their states one by one", self._unsupported)
        else:
            log.warning("the API refused batched state reports (%s); these runs report alone", exc)
        for ticket in live:
            ticket.finish(FALLBACK, str(exc))

    def _settle(self, live: list[Ticket], reply: StateReportResults) -> None:
        results = reply.results
        if len(results) != len(live) or any(r.run_id != t.run_id for r, t in zip(results, live, strict=False)):
            log.warning("the API answered %d state reports with %d results; they report alone", len(live), len(results))
            for ticket in live:
                ticket.finish(FALLBACK, "mismatched batch answer")
            return
        for ticket, result in zip(live, results, strict=True):
            if result.status < 300:
                ticket.finish(DELIVERED)
                continue
            level = logging.WARNING if result.status == 409 else logging.ERROR
            log.log(
                level, "run %s: the API refused state %s: %s", ticket.run_id, ticket.update.state.value, result.detail
            )
            ticket.finish(REFUSED, result.detail)


class StateBatchers:
    """One :class:`StateBatcher` per agent-key client (so per API and key), closed with the agent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Keyed by identity: each batcher holds its client, so an id here is never reused by another object.
        self._batchers: dict[int, StateBatcher] = {}

    def for_api(self, api: StateBatchChannel) -> StateBatcher:
        with self._lock:
            batcher = self._batchers.get(id(api))
            if batcher is None:
                batcher = self._batchers[id(api)] = StateBatcher(api)
            return batcher

    def close(self) -> None:
        with self._lock:
            batchers = list(self._batchers.values())
            self._batchers.clear()
        for batcher in batchers:
            batcher.close()
