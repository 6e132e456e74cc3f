"""The background sweep: every few seconds, the runs of agents that went silent become Unknown (see lost_runs).

Usage::

    sweeper = Sweeper(services.agents, interval=5.0); sweeper.start(); ...; sweeper.stop()
"""

from __future__ import annotations

import logging
import threading

from localagent.errors import LocalAgentError
from localagent.server.agents_store import AgentStore

log = logging.getLogger(__name__)


class Sweeper:
    """A daemon thread calling ``AgentStore.sweep_lost`` every ``interval`` seconds until stopped."""

    def __init__(self, agent_store: AgentStore, interval: float) -> None:
        self._agents = agent_store
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="localagent-sweep", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def sweep_once(self) -> list[str]:
        crashed = self._agents.sweep_lost()
        if crashed:
            log.info("%d run(s) of silent agents moved (Unknown, reconnected, replaced or given up)", len(crashed))
        return crashed

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.sweep_once()
            except LocalAgentError as exc:  # the database hiccuped; the next sweep tries again
                log.warning("sweep failed: %s", exc)
