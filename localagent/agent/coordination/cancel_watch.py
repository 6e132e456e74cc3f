"""The cancel watch (thread ``localagent-cancel-watch``): while no claim can be made, long-poll with 0 slots.

Usage::

    watch = CancelWatch(config, session, runs, life, on_contact=mark)
    threading.Thread(target=watch.run, name="localagent-cancel-watch").start()

While every slot is busy (or the agent drains) the claim loop sets ``life.not_claiming``; the API answers a
claim with ``slots = 0`` as soon as one of this agent's runs is to be cancelled, so a cancel reaches a full
agent at once instead of with the next heartbeat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from localagent.agent.coordination.claims import claim_request
from localagent.agent.retry import Backoff
from localagent.errors import ApiError

if TYPE_CHECKING:
    from localagent.agent.config_in_force import ConfigInForce
    from localagent.agent.coordination.lifecycle import Lifecycle
    from localagent.agent.coordination.session import AgentSession
    from localagent.agent.run_table import RunTable

logger = logging.getLogger("localagent.agent")

_FIRST_RETRY = 0.25  # seconds before the watch looks again for a registration, or after a failed poll


class CancelWatch:
    """Long-polls for cancels while the agent cannot claim; ends when the agent closes."""

    def __init__(
        self,
        config: ConfigInForce,
        session: AgentSession,
        runs: RunTable,
        life: Lifecycle,
        *,
        on_contact: Callable[[], None],
    ) -> None:
        self._config = config
        self._session = session
        self._runs = runs
        self._life = life
        self._on_contact = on_contact
        self._backoff = Backoff(first=_FIRST_RETRY, cap=lambda: min(self._config.config.agent.poll_interval, 1.0))

    def run(self) -> None:
        life = self._life
        while True:
            life.not_claiming.wait()
            if life.closed.is_set():
                return
            endpoint = self._session.endpoint()
            config = self._config.config
            if endpoint is None:
                life.closed.wait(_FIRST_RETRY)
                continue
            try:
                reply = endpoint.client.claim(endpoint.agent_id, claim_request(config, 0))
            except ApiError as exc:
                logger.debug("cancel watch poll failed: %s", exc)
                self._backoff.wait(life.closed)
                continue
            except Exception:
                logger.exception("the cancel watch failed unexpectedly")
                life.closed.wait(config.agent.poll_interval)
                continue
            self._backoff.reset()
            self._on_contact()
            self._runs.cancel(reply.cancel)
