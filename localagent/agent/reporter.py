"""Delivering a run's state changes to the API, in order, through outages.

Each run has one :class:`StateReporter` thread. An update is retried with back-off while the API is
unreachable (or answers 5xx), so a final state reaches the API once it returns; an update the API
refuses (409: the server already moved the run on, e.g. Crashed; 404/401) is logged, not retried.

Usage::

    reporter = StateReporter(api, run_id); reporter.start()
    reporter.report(StateUpdate(state=StateName.RUNNING, pid=42))
    reporter.close(); reporter.join()
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import TYPE_CHECKING, Protocol

from localagent.errors import ApiConflict, ApiRejected, ApiUnavailable

if TYPE_CHECKING:
    from localagent.api.models import FlowRun, StateUpdate

log = logging.getLogger("localagent.run")

MAX_BACKOFF = 5.0


class StateSink(Protocol):
    """The part of :class:`~localagent.api.client.ApiClient` the reporter uses."""

    def set_state(self, run_id: str, update: StateUpdate) -> FlowRun: ...


class StateReporter:
    """Sends one run's state updates one after the other, each until the API has answered."""

    def __init__(self, api: StateSink, run_id: str, *, initial_backoff: float = 0.5) -> None:
        self._api = api
        self._run_id = run_id
        self._initial_backoff = initial_backoff
        self._queue: deque[StateUpdate] = deque()
        self._changed = threading.Condition()
        self._closed = False
        self._give_up = threading.Event()
        self._thread: threading.Thread | None = None
        self.delivered: list[StateUpdate] = []
        self.refused: list[tuple[StateUpdate, str]] = []

    def start(self, *, name: str = "state-reporter") -> None:
        self._thread = threading.Thread(target=self._deliver_all, name=name, daemon=True)
        self._thread.start()

    def report(self, update: StateUpdate) -> None:
        with self._changed:
            self._queue.append(update)
            self._changed.notify_all()

    def close(self) -> None:
        """No more updates; :meth:`join` returns once the queued ones are delivered."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def give_up(self) -> None:
        """Stop retrying (the agent is going away and the API is unreachable)."""
        self._give_up.set()
        with self._changed:
            self._changed.notify_all()

    def _deliver_all(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._queue) or self._closed or self._give_up.is_set())
                if not self._queue or self._give_up.is_set():
                    for update in self._queue:
                        log.error("run %s: state %s was not delivered (API unreachable)", self._run_id, update.state)
                    return
                update = self._queue.popleft()
            self._deliver(update)

    def _deliver(self, update: StateUpdate) -> None:
        backoff = self._initial_backoff
        warned = False
        while True:
            try:
                self._api.set_state(self._run_id, update)
            except ApiConflict as exc:
                log.warning("run %s: the API refused state %s: %s", self._run_id, update.state.value, exc)
                self.refused.append((update, str(exc)))
                return
            except (ApiUnavailable, ApiRejected) as exc:
                if isinstance(exc, ApiRejected) and exc.status_code < 500:
                    log.error("run %s: the API refused state %s: %s", self._run_id, update.state.value, exc)
                    self.refused.append((update, str(exc)))
                    return
                if not warned:
                    log.warning(
                        "run %s: cannot report state %s yet, retrying: %s", self._run_id, update.state.value, exc
                    )
                    warned = True
                if self._give_up.wait(backoff):
                    log.error("run %s: state %s was not delivered (API unreachable)", self._run_id, update.state)
                    return
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            if warned:
                log.info("run %s: state %s delivered after the API came back", self._run_id, update.state.value)
            self.delivered.append(update)
            return
