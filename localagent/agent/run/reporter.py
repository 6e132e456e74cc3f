"""Delivering a run's state changes to the API through outages, and knowing what is still undelivered.

A run's updates are sent one after the other (see :mod:`localagent.agent.run.execution`), each retried with
back-off while the API is unreachable (or answers 5xx), so a final state reaches the API once it returns;
an update the API refuses (409: the server already moved the run on, e.g. Crashed; 404/401) is logged,
not retried. Retrying stops when the run's :class:`GiveUp` is set or its deadline passes (the agent is
going away).

A run frees its slot as soon as its final state is *queued*; the agent's :class:`PendingDeliveries` tracks
the deliveries still under way so a shutdown can wait for them before the API goes away.

Usage::

    give_up = GiveUp()
    reporter = StateReporter(api, run_id, give_up=give_up)
    reporter.deliver(StateUpdate(state=StateName.RUNNING, pid=42))   # blocks until answered or given up
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from localagent.agent.coordination.state_batch import DELIVERED, GIVEN_UP, REFUSED
from localagent.agent.retry import Backoff, GiveUp
from localagent.errors import ApiConflict, ApiRejected, ApiUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable

    from localagent.agent.coordination.state_batch import StateBatcher, Ticket
    from localagent.api.models import StateUpdate
    from localagent.api.port import StateChannel

log = logging.getLogger("localagent.run")

MAX_BACKOFF = 5.0


class PendingDeliveries:
    """The runs whose output or final state is still being delivered after their slot was freed."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._pending: dict[str, GiveUp] = {}

    def add(self, run_id: str, give_up: GiveUp) -> None:
        with self._changed:
            self._pending[run_id] = give_up

    def discard(self, run_id: str) -> None:
        with self._changed:
            self._pending.pop(run_id, None)
            self._changed.notify_all()

    def __len__(self) -> int:
        return len(self._pending)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for every delivery; then make the rest give up. ``True`` if all finished."""
        deadline = time.monotonic() + timeout
        with self._changed:
            for give_up in self._pending.values():
                give_up.set_deadline(deadline)
            done = self._changed.wait_for(lambda: not self._pending, timeout)
            if not done:
                for give_up in self._pending.values():
                    give_up.set()
                log.error("%d run(s) ended before their final state or output reached the API", len(self._pending))
                done = self._changed.wait_for(lambda: not self._pending, 2.0)
            return done


class StateReporter:
    """Delivers one run's state updates, each until the API has answered (or the run gives up)."""

    def __init__(
        self,
        api: StateChannel,
        run_id: str,
        *,
        give_up: GiveUp | None = None,
        initial_backoff: float = 0.5,
        batcher: StateBatcher | None = None,
        attempt: int | None = None,
    ) -> None:
        self._api = api
        self._attempt = attempt  # stamped on every update: a late report of a replaced attempt is told apart
        self._batcher = batcher
        self._run_id = run_id
        self._initial_backoff = initial_backoff
        self.give_up = give_up or GiveUp()
        self.delivered: list[StateUpdate] = []
        self.refused: list[tuple[StateUpdate, str]] = []

    def deliver(self, update: StateUpdate) -> bool:
        """Send ``update`` until the API answers; ``True`` if it was stored or refused for good.

        With a batcher, the update goes out in the batcher's next batch; it is sent alone, with the run's
        token, only when the API would not take it in a batch.
        """
        return self.settle(update, self.submit(update))

    def submit(self, update: StateUpdate, on_done: Callable[[Ticket], None] | None = None) -> Ticket | None:
        """Queue ``update`` in the batcher without waiting (None without a batcher); :meth:`settle` it later.

        ``on_done`` is the batcher's callback (see :meth:`StateBatcher.submit`). A run's next update must
        not be submitted before this one is settled (that keeps them in order).
        """
        if self._batcher is None:
            return None
        return self._batcher.submit(self._run_id, self._stamped(update), self.give_up, on_done)

    def _stamped(self, update: StateUpdate) -> StateUpdate:
        if self._attempt is None or update.attempt is not None:
            return update
        return update.model_copy(update={"attempt": self._attempt})

    def settle(self, update: StateUpdate, ticket: Ticket | None) -> bool:
        """Wait for a submitted ``update`` (sending it alone if the batcher handed it back); as :meth:`deliver`."""
        if ticket is not None:
            ticket.wait()
            if ticket.outcome == DELIVERED:
                self.delivered.append(update)
                return True
            if ticket.outcome == REFUSED:
                self.refused.append((update, ticket.detail))
                return True
            if ticket.outcome == GIVEN_UP:
                return False
        return self._deliver_alone(update)

    def _deliver_alone(self, update: StateUpdate) -> bool:
        backoff = Backoff(first=self._initial_backoff, cap=MAX_BACKOFF)
        warned = False
        while True:
            if self.give_up.is_set():  # e.g. the batcher handed it back after the shutdown's grace ended
                log.error("run %s: state %s was not delivered (API unreachable)", self._run_id, update.state.value)
                return False
            try:
                self._api.set_state(self._run_id, self._stamped(update))
            except ApiConflict as exc:
                log.warning("run %s: the API refused state %s: %s", self._run_id, update.state.value, exc)
                self.refused.append((update, str(exc)))
                return True
            except (ApiUnavailable, ApiRejected) as exc:
                if isinstance(exc, ApiRejected) and exc.status_code < 500:
                    log.error("run %s: the API refused state %s: %s", self._run_id, update.state.value, exc)
                    self.refused.append((update, str(exc)))
                    return True
                if not warned:
                    log.warning(
                        "run %s: cannot report state %s yet, retrying: %s", self._run_id, update.state.value, exc
                    )
                    warned = True
                if backoff.wait(self.give_up):
                    log.error("run %s: state %s was not delivered (API unreachable)", self._run_id, update.state)
                    return False
                continue
            if warned:
                log.info("run %s: state %s delivered after the API came back", self._run_id, update.state.value)
            self.delivered.append(update)
            return True
