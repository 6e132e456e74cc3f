"""What the agent does with its runs when it cannot reach its API (thread ``localagent-api-lost``).

``runs.api_lost_after`` after the last contact with the API (a registration, heartbeat or claim the API
answered), the API counts as lost. With ``runs.on_api_lost = "keep"`` (the default) the agent logs it once
and its runs go on: the server keeps them ``Unknown`` and never retries them while the agent may still run
them. With ``"stop"`` every run is stopped (``runs.stop_signal``, ``runs.stop_grace``, then SIGKILL to its
process group) and ends ``Crashed`` ("stopped: API unreachable for 1m ..."); those reports wait in the
state queue and reach the API when it is back. Either way the return of contact is logged. So an operator
can choose at-most-once: a server may retry the runs of a ``stop`` agent elsewhere once the agent's own
stop time has passed (see ``localagent/server/lost_runs.py`` and docs/operations.md).

Both keys are read from the config in force at every look, so a reload applies at once.

Usage::

    watch = ApiLostWatch(config, contact, runs, life)
    threading.Thread(target=watch.run, name="localagent-api-lost").start()
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from localagent.config.units import format_duration

if TYPE_CHECKING:
    from localagent.agent.config_in_force import ConfigInForce
    from localagent.agent.coordination.lifecycle import Lifecycle
    from localagent.agent.health_report import Contact
    from localagent.agent.run_table import RunTable

logger = logging.getLogger("localagent.agent")

LOOK_EVERY = 1.0  # at most this long between looks: a reload or the return of contact is seen promptly


def stop_message(after: float) -> str:
    """The message of a run stopped because the API was unreachable."""
    return f'stopped: API unreachable for {format_duration(after)} (runs.on_api_lost = "stop")'


class ApiLostWatch:
    """Watches the time since the last contact with the API and applies ``runs.on_api_lost``."""

    def __init__(
        self,
        config: ConfigInForce,
        contact: Contact,
        runs: RunTable,
        life: Lifecycle,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._contact = contact
        self._runs = runs
        self._life = life
        self._clock = clock
        self._lost_since: float | None = None  # the last contact before the API counted as lost
        self.stopped_runs = 0

    @property
    def lost(self) -> bool:
        return self._lost_since is not None

    def run(self) -> None:
        while not self._life.closed.wait(self.look()):
            pass

    def look(self) -> float:
        """Apply the policy to the time now; the seconds until the next look."""
        runs = self._config.config.runs
        last = self._contact.last if self._contact.last is not None else self._contact.started_at
        silent = self._clock() - last
        if silent < runs.api_lost_after:
            if self._lost_since is not None:
                self._lost_since = None
                logger.warning(
                    "API contact is back after %s without it; %s",
                    format_duration(silent if silent > 0 else 0),
                    f"{self.stopped_runs} run(s) stopped meanwhile are reported Crashed now"
                    if self.stopped_runs
                    else "runs that went on are reported as usual",
                )
                self.stopped_runs = 0
            return max(0.05, min(LOOK_EVERY, runs.api_lost_after - silent))
        if self._lost_since is None or self._lost_since != last:
            self._lost_since = last
            running = len(self._runs.running())
            if runs.on_api_lost == "stop":
                logger.warning(
                    'API unreachable for %s: stopping %d run(s) (runs.on_api_lost = "stop"); no new runs are '
                    "claimed until it is back",
                    format_duration(runs.api_lost_after),
                    running,
                )
            else:
                logger.warning(
                    'API unreachable for %s: %d run(s) keep running (runs.on_api_lost = "keep"); their states '
                    "and output are reported when it is back",
                    format_duration(runs.api_lost_after),
                    running,
                )
        if runs.on_api_lost == "stop":
            # Every look while lost: a run that was starting as contact ended is stopped too (a repeat is a no-op).
            self.stopped_runs = max(self.stopped_runs, self._runs.stop_api_lost(stop_message(runs.api_lost_after)))
        return LOOK_EVERY
