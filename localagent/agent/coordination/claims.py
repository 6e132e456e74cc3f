"""The claim loop (thread ``localagent-claim``): register, long-poll claims for the free slots, start the runs.

Usage::

    claims = ClaimLoop(config, session, runs, leftovers, batchers, metrics, life, on_contact=mark)
    threading.Thread(target=claims.run, name="localagent-claim").start()
    claims.in_flight            # the origin of the claim on the wire, if any (its API stays alive)

Each turn: make sure the agent is registered on the API in force; the first time, let output an earlier
agent left reach the API; ask for as many runs as slots are free, waiting up to ``poll_interval``; start
what came back. The runs start with the config in force *when the claim returns*, not when it was asked: a
reload that lands during the long-poll applies to them (``runs.env``, ``logs.max_run_output``, ...). The
claim's size was fixed when it was asked; if a reload lowered ``agent.max_concurrent_runs`` meanwhile, the
runs already handed out still start (the API handed them to this agent; they are "runs already claimed" in
docs/reload.md) and the lower cap applies from the next claim. A failed claim is never resent at once: the
loop backs off (:mod:`localagent.agent.retry`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from localagent.agent.coordination.session import RUN_CONFIG_TYPES, RunOrigin
from localagent.agent.retry import Backoff
from localagent.api.models import ClaimedRun, ClaimRequest
from localagent.errors import ApiError, ApiNotFound

if TYPE_CHECKING:
    from localagent.agent.config_in_force import ConfigInForce
    from localagent.agent.coordination.lifecycle import Lifecycle
    from localagent.agent.coordination.session import AgentSession
    from localagent.agent.coordination.state_batch import StateBatchers
    from localagent.agent.metrics import AgentMetrics
    from localagent.agent.run.leftovers import LeftoverSpools
    from localagent.agent.run_table import RunTable
    from localagent.api.port import RunChannel
    from localagent.config.model import AgentConfig

logger = logging.getLogger("localagent.agent")

UNCAPPED_CLAIM = 32  # runs asked for per claim when max_concurrent_runs = 0 (no cap)
LEFTOVER_WAIT = 30.0  # seconds the first claim waits for output an earlier agent left to reach the API


def claim_request(config: AgentConfig, slots: int) -> ClaimRequest:
    """A claim for ``slots`` runs (0: only learn of cancels) with the labels of ``config``."""
    return ClaimRequest(
        slots=slots,
        wait=config.agent.poll_interval,
        labels=list(config.agent.effective_labels()),
        run_unlabeled=config.agent.run_unlabeled,
        run_config_types=list(RUN_CONFIG_TYPES),
    )


class ClaimLoop:
    """Claims runs for the free slots and starts them, until the agent stops or ``max_polls`` is reached."""

    def __init__(
        self,
        config: ConfigInForce,
        session: AgentSession,
        runs: RunTable,
        leftovers: LeftoverSpools,
        batchers: StateBatchers,
        metrics: AgentMetrics,
        life: Lifecycle,
        *,
        on_contact: Callable[[], None],
        backoff: Backoff | None = None,
    ) -> None:
        self._config = config
        self._session = session
        self._runs = runs
        self._leftovers = leftovers
        self._batchers = batchers
        self._metrics = metrics
        self._life = life
        self._on_contact = on_contact
        self._backoff = backoff or Backoff(first=0.25, cap=lambda: self._config.config.agent.poll_interval)
        self.in_flight: RunOrigin | None = None  # where the claim on the wire went
        self.failed = False  # the loop ended on an unexpected error (logged)

    def free_slots(self, config: AgentConfig) -> int:
        cap = config.agent.max_concurrent_runs
        if cap == 0:
            return UNCAPPED_CLAIM
        return max(0, cap - len(self._runs.running()))

    def run(self) -> None:
        """The loop; ``life.claims_over`` is set when it ends."""
        try:
            self._claim_until_stopped()
        except Exception:
            self.failed = True
            logger.exception("the claim loop failed; stopping the agent")
        finally:
            self._life.claims_over.set()

    def _claim_until_stopped(self) -> None:
        polls = 0
        stopping = self._life.stopping
        while not stopping.is_set():
            endpoint = self._session.ensure_registered(stopping)
            if endpoint is None or stopping.is_set():
                return
            if self._leftovers.start(endpoint.api, endpoint.client):  # the first time only
                self._await_leftovers()
            config = self._config.config
            slots = self.free_slots(config)
            if slots == 0:
                self._wait_for_a_slot(config)
                continue
            origin = RunOrigin(endpoint.api, endpoint.url)
            self.in_flight = origin
            began = time.monotonic()
            polls += 1
            try:
                reply = endpoint.client.claim(endpoint.agent_id, claim_request(config, slots))
            except ApiNotFound as exc:
                self.in_flight = None
                self._metrics.observe_poll(time.monotonic() - began, ok=False)
                self._session.forget(endpoint.agent_id, f"the API no longer knows this agent ({exc})")
                continue
            except ApiError as exc:
                self.in_flight = None
                self._metrics.observe_poll(time.monotonic() - began, ok=False)
                if stopping.is_set():
                    return  # e.g. the embedded API stopped under a poll that outlived the shutdown
                self._session.report_failure("claim", exc, config.agent.poll_interval)
                if self._backoff.wait(stopping):
                    return
            else:
                self._backoff.reset()
                self._metrics.observe_poll(time.monotonic() - began, ok=True)
                self._on_contact()
                self._session.report_recovery()
                # The config in force now, not the one the claim was asked with: a reload during the
                # long-poll applies to these runs (issue 18).
                started_with = self._config.config
                client = endpoint.client
                batcher = self._batchers.for_api(client) if client.capabilities.state_batches else None
                self._runs.start(reply.runs, started_with, self._run_clients(origin.url, started_with), origin, batcher)
                self.in_flight = None
                self._runs.cancel(reply.cancel)
            max_polls = self._config.config.agent.max_polls
            if max_polls and polls >= max_polls:
                logger.info("max_polls (%d) reached: no more claims", max_polls)
                return

    def _wait_for_a_slot(self, config: AgentConfig) -> None:
        life = self._life
        life.slot_freed.clear()
        if self.free_slots(config) == 0:
            life.not_claiming.set()
            life.slot_freed.wait(config.agent.poll_interval)
            if not life.stopping.is_set():  # a drain keeps the cancel watch going
                life.not_claiming.clear()

    def _await_leftovers(self) -> None:
        """Let output an earlier agent left reach the API before the first claim, for up to LEFTOVER_WAIT.

        A run of that agent that the API has since retried may be claimed again; its new attempt numbers its
        lines after the last one the API has, so the old attempt's lines must be there first, or the two
        would share seqs (and the API would keep only one line of each pair).
        """
        deadline = time.monotonic() + LEFTOVER_WAIT
        while not self._life.stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                logger.warning(
                    "output left by an earlier agent is still being delivered after %gs; claiming anyway "
                    "(a retried run of that agent may then lose some of its first attempt's lines)",
                    LEFTOVER_WAIT,
                )
                return
            if self._leftovers.join(min(remaining, 0.5)):
                return

    def _run_clients(self, url: str, config: AgentConfig) -> Callable[[ClaimedRun], RunChannel]:
        """Run-scoped clients on the API at ``url`` (the one that handed the runs out)."""

        def client_for(claimed: ClaimedRun) -> RunChannel:
            return self._session.run_client(url, claimed.token, config)

        return client_for
