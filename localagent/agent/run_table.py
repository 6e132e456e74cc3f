"""The runs this agent started and has not seen finish: start, cancel, stop, count them.

Usage::

    table = RunTable(execution_factory=RunExecution, reaper=reaper, console=console, metrics=metrics,
                     on_change=wake_up)
    table.start(claimed_runs, config, client_for=lambda claimed: api.scoped(claimed.token),
                origin=RunOrigin(api="embedded", url=url))
    table.cancel(["run-id"]); len(table); table.ids(api="embedded"); table.shutdown_all(immediate=False)
    table.close_intake()   # runs handed out after this are reported Cancelled, never started

Each run gets its own run-scoped client, closed when the run finishes, and remembers its origin: the API
that handed it out (it is listed in that API's heartbeats) and the url its client reports to (an embedded
API that moved keeps its old listener while a run still uses it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from localagent.agent.metrics import AgentMetrics
from localagent.api.models import ClaimedRun, StateName, StateUpdate
from localagent.errors import ApiError

if TYPE_CHECKING:
    from localagent.agent.coordination.session import RunOrigin
    from localagent.agent.coordination.state_batch import StateBatcher
    from localagent.agent.run.console import ConsolePrinter
    from localagent.agent.run.reaper import ChildReaper
    from localagent.agent.run.reporter import PendingDeliveries
    from localagent.api.port import RunChannel
    from localagent.config.model import AgentConfig

logger = logging.getLogger("localagent.agent")

SHUTDOWN_MESSAGE = "agent shut down"


class RunHandle(Protocol):
    """What the agent needs of a running run (a RunExecution, or a fake in tests)."""

    run_id: str
    done: threading.Event
    final_state: StateName | None

    def start(self) -> None: ...
    def cancel(self, message: str = ...) -> None: ...
    def shutdown(self, message: str = ..., *, immediate: bool = False) -> None: ...
    def stop_api_lost(self, message: str) -> None: ...


class ExecutionFactory(Protocol):
    """Builds a run's handle; ``RunExecution`` itself is one."""

    def __call__(
        self,
        claimed: ClaimedRun,
        config: AgentConfig,
        api: RunChannel,
        *,
        reaper: ChildReaper,
        console: ConsolePrinter,
        metrics: AgentMetrics | None = None,
        on_finished: Callable[[Any], None] | None = None,
        state_batcher: StateBatcher | None = None,
        pending: PendingDeliveries | None = None,
        origin: RunOrigin | None = None,
    ) -> RunHandle: ...


def default_execution_factory() -> ExecutionFactory:
    from localagent.agent.run.execution import RunExecution

    return RunExecution


class RunTable:
    """Thread-safe table of running runs, keyed by run id."""

    def __init__(
        self,
        *,
        execution_factory: ExecutionFactory,
        reaper: ChildReaper,
        console: ConsolePrinter,
        metrics: AgentMetrics,
        on_change: Callable[[], None],
        pending: PendingDeliveries | None = None,
    ) -> None:
        self._execution_factory = execution_factory
        self._pending = pending
        self._reaper = reaper
        self._console = console
        self._metrics = metrics
        self._on_change = on_change
        self._lock = threading.Lock()
        self._runs: dict[str, RunHandle] = {}
        self._clients: dict[str, RunChannel] = {}
        self._origins: dict[str, RunOrigin] = {}
        self._cancel_sent: set[str] = set()
        self._accepting = True

    def __len__(self) -> int:
        return len(self._runs)

    def ids(self, api: str | None = None) -> list[str]:
        """Ids of the runs in the table; only those handed out by ``api`` when given."""
        with self._lock:
            if api is None:
                return sorted(self._runs)
            return sorted(run_id for run_id in self._runs if self._origins[run_id].api == api)

    def origins(self) -> set[RunOrigin]:
        """Where the runs in the table came from (each origin once)."""
        with self._lock:
            return {self._origins[run_id] for run_id in self._runs}

    def running(self) -> list[RunHandle]:
        """Runs not yet finished (a handle whose ``done`` is set but that never reported finishing is gone)."""
        with self._lock:
            for run_id in [run_id for run_id, handle in self._runs.items() if handle.done.is_set()]:
                self._runs.pop(run_id, None)
                self._origins.pop(run_id, None)
            return list(self._runs.values())

    def start(
        self,
        claimed_runs: list[ClaimedRun],
        config: AgentConfig,
        client_for: Callable[[ClaimedRun], RunChannel],
        origin: RunOrigin,
        state_batcher: StateBatcher | None = None,
    ) -> None:
        """Start every claimed run with ``config`` (the config in force at the claim) and its own client.

        ``state_batcher`` (of the API that handed the runs out) carries their state reports together.
        """
        for claimed in claimed_runs:
            run = claimed.run
            client = client_for(claimed)
            with self._lock:
                accepting = self._accepting
            if not accepting:
                self._report(run.id, client, StateName.CANCELLED, SHUTDOWN_MESSAGE)
                client.close()
                continue
            try:
                handle = self._execution_factory(
                    claimed,
                    config,
                    client,
                    reaper=self._reaper,
                    console=self._console,
                    metrics=self._metrics,
                    on_finished=self._finished,
                    state_batcher=state_batcher,
                    pending=self._pending,
                    origin=origin,
                )
                with self._lock:  # in the table before start(): a fast run may finish inside start()
                    self._runs[run.id] = handle
                    self._clients[run.id] = client
                    self._origins[run.id] = origin
                logger.debug("run %s (%s/%s) claimed: starting", run.id, run.flow, run.name)
                handle.start()
            except Exception as exc:
                logger.exception("run %s (%s/%s) could not be started", run.id, run.flow, run.name)
                with self._lock:
                    self._runs.pop(run.id, None)
                    self._clients.pop(run.id, None)
                    self._origins.pop(run.id, None)
                self._report(run.id, client, StateName.FAILED, f"the agent could not start this run: {exc}")
                client.close()

    def cancel(self, run_ids: list[str]) -> None:
        """Cancel the listed runs that run here, each once (the API may repeat a cancel until it is done)."""
        for run_id in run_ids:
            with self._lock:
                handle = self._runs.get(run_id)
                if handle is None or run_id in self._cancel_sent:
                    continue
                self._cancel_sent.add(run_id)
            logger.info("run %s: cancel requested", run_id)
            handle.cancel("cancelled on request")

    def shutdown_all(self, *, immediate: bool) -> None:
        """Stop every running run; it ends Cancelled ("agent shut down")."""
        for handle in self.running():
            handle.shutdown(SHUTDOWN_MESSAGE, immediate=immediate)

    def stop_api_lost(self, message: str) -> int:
        """Stop every running run because the API is unreachable (``runs.on_api_lost = "stop"``): each ends
        Crashed with ``message``, reported once the API is back. Returns how many were running."""
        handles = self.running()
        for handle in handles:
            handle.stop_api_lost(message)
        return len(handles)

    def close_intake(self) -> None:
        """From now on, runs handed to :meth:`start` are reported Cancelled instead of started."""
        with self._lock:
            self._accepting = False

    def close(self) -> None:
        """Close the clients of runs still in the table."""
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            client.close()

    def _finished(self, handle: Any) -> None:
        run_id = str(handle.run_id)
        with self._lock:
            self._runs.pop(run_id, None)
            self._origins.pop(run_id, None)
            client = self._clients.pop(run_id, None)
            self._cancel_sent.discard(run_id)
        if client is not None:
            client.close()
        self._on_change()

    @staticmethod
    def _report(run_id: str, client: RunChannel, state: StateName, message: str) -> None:
        try:
            client.set_state(run_id, StateUpdate(state=state, message=message))
        except ApiError as exc:
            logger.warning("could not report run %s %s (%s): %s", run_id, state.value, message, exc)
