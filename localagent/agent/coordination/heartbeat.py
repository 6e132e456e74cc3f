"""The heartbeat (thread ``localagent-heartbeat``): tell every API what runs here, pick up cancels.

Usage::

    beat = HeartbeatLoop(config, session, runs, life, claim_in_flight=claims.in_flight_on)
    threading.Thread(target=beat.run, name="localagent-heartbeat").start()

Every ``poll_interval`` (at most 10 s), or at once when ``life.beat_now`` is set (a new config, a
shutdown), the session heartbeats the API in force and every API a reload left behind while runs it handed
out still run here (:meth:`AgentSession.heartbeat`); the cancels they answer reach the runs at once. A
failed beat is not retried: the next one is the retry. After each beat, ``sweep(urls)`` (if set) hears
which API urls runs still report to, so an embedded listener left behind can stop once unused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from localagent.agent.coordination.session import beat_interval

if TYPE_CHECKING:
    from localagent.agent.config_in_force import ConfigInForce
    from localagent.agent.coordination.lifecycle import Lifecycle
    from localagent.agent.coordination.session import AgentSession, RunOrigin
    from localagent.agent.run_table import RunTable

logger = logging.getLogger("localagent.agent")


class HeartbeatLoop:
    """Heartbeats until the agent closes."""

    def __init__(
        self,
        config: ConfigInForce,
        session: AgentSession,
        runs: RunTable,
        life: Lifecycle,
        *,
        claim_in_flight: Callable[[], RunOrigin | None],
    ) -> None:
        self._config = config
        self._session = session
        self._runs = runs
        self._life = life
        self._claim_in_flight = claim_in_flight
        self.sweep: Callable[[set[str]], None] | None = None

    def run(self) -> None:
        life = self._life
        while True:
            life.beat_now.wait(beat_interval(self._config.config))
            if life.closed.is_set():
                return
            life.beat_now.clear()
            try:
                cancels = self._session.heartbeat(self._runs.ids, keep=self._claim_in_flight_on)
            except Exception:
                logger.exception("heartbeat failed unexpectedly")
                cancels = []
            self._runs.cancel(cancels)
            self._sweep_listeners()

    def _claim_in_flight_on(self, api: str) -> bool:
        claiming = self._claim_in_flight()
        return claiming is not None and claiming.api == api

    def _sweep_listeners(self) -> None:
        sweep = self.sweep
        if sweep is None:
            return
        in_use = {origin.url for origin in self._runs.origins()}
        claiming = self._claim_in_flight()
        if claiming is not None:
            in_use.add(claiming.url)
        try:
            sweep(in_use)
        except Exception:
            logger.exception("stopping an unused embedded API listener failed")
