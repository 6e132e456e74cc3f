"""The orchestrator port, served by a Prefect 3 work pool: the agent acts as a Prefect process worker.

Usage::

    api = PrefectOrchestrator("http://127.0.0.1:4200/api", key, 10.0, settings_of=lambda: config.prefect)
    api.register_agent(AgentRegister(name="host-1"))         # checks (or creates) the pool; heartbeat
    reply = api.claim(agent_id, ClaimRequest(slots=2, wait=10.0))

What each port call means here:

- ``register_agent``: the pool exists (created, type process, when ``prefect.create_pool_if_missing``) and is
  a process pool (:mod:`~localagent.prefect.pool`); the first worker heartbeat; runs a dead agent of this name
  left here are marked Crashed (:mod:`~localagent.prefect.lost_runs`); the event stream starts.
- ``claim``: :class:`~localagent.prefect.claims.RunClaimer` (due runs proposed ``PENDING``), woken by the
  event stream, or every ``prefect.query_interval`` while it is down; ``reply.cancel`` lists runs of ours
  the stream saw become ``CANCELLING``.
- ``heartbeat``: the worker heartbeat; runs of ours that are ``CANCELLING``, cancelled or deleted in Prefect
  come back to be stopped. A claim or heartbeat that finds the pool deleted raises ``ApiNotFound``: the agent
  registers again, which recreates the pool or waits for it (:func:`~localagent.prefect.pool.ensure_pool`).
- ``set_state``: the flow-run engine reports Running and the final state itself; the worker only sets
  ``infrastructure_pid`` at the start and settles what the process left open (:mod:`~localagent.prefect.finals`).
- output: kept per run as a short tail for a crash message; sent to the run's Prefect logs only with
  ``prefect.forward_output`` (the engine already ships the flow's own logs; forwarding copies them).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from localagent.api.models import (
    Agent,
    AgentRegister,
    ClaimReply,
    ClaimRequest,
    FlowRun,
    Heartbeat,
    HeartbeatReply,
    LogBatchResult,
    StateName,
    StateReport,
    StateReportResult,
    StateReportResults,
    StateUpdate,
)
from localagent.api.port import Capabilities
from localagent.errors import ApiNotFound, ApiRejected
from localagent.prefect.claims import RunClaimer
from localagent.prefect.events import EventStream, websocket_available
from localagent.prefect.finals import forward_output, report_end
from localagent.prefect.lost_runs import crash_lost_runs
from localagent.prefect.pool import ensure_pool, pool_gone
from localagent.prefect.rest import PrefectRest
from localagent.prefect.run_view import RunView, local_run

if TYPE_CHECKING:
    from localagent.api.log_batch import LogRow
    from localagent.config.model import PrefectSection

logger = logging.getLogger("localagent.prefect")

CAPABILITIES = Capabilities(state_batches=True, output_rows=False, web_view=False)
TAIL_LINES = 20


@dataclass
class _RunContext:
    forward: bool
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))


class PrefectOrchestrator:
    """A Prefect 3 work pool behind the orchestrator port (thread-safe; see the module docstring)."""

    def __init__(
        self,
        url: str,
        key: str | None,
        timeout: float,
        *,
        settings_of: Callable[[], PrefectSection],
        auth: str = "bearer",
    ) -> None:
        self._url = url
        self._settings_of = settings_of
        self.rest = PrefectRest(url, key=key, timeout=timeout, auth=auth)
        self._worker_name = "localagent"
        self._claimer = RunClaimer(self.rest, worker_name=self._worker_name)
        self._claim_lock = threading.Lock()
        self._changed = threading.Condition()
        self._generation = 0  # bumped by every event that may have made a claim worth trying
        self._runs: dict[str, _RunContext] = {}
        self._cancelling: set[str] = set()
        self._gone: set[str] = set()  # runs deleted in Prefect while they ran here (logged once)
        self._pool_checked: tuple[str, tuple[str, ...]] | None = None
        self._stream: EventStream | None = None
        self._record: Agent | None = None  # what register_agent answered (the worker, as the agent sees it)

    # -- the port: identity ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self._url

    @property
    def capabilities(self) -> Capabilities:
        return CAPABILITIES

    def scoped(self, token: str) -> RunView:
        """Runs report with the agent's key (Prefect has no run tokens), through this client.

        A view, not this client itself: the agent closes a run's client when the run ends, which must not
        close the agent's (its event stream and connection pool).
        """
        return RunView(self)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()
        self.rest.close()

    # -- registration, heartbeat -------------------------------------------------------------------------

    def register_agent(self, request: AgentRegister) -> Agent:
        settings = self._settings_of()
        claimer = RunClaimer(self.rest, worker_name=request.name)
        claimer.unsettled = self._claimer.unsettled  # proposals whose answer was lost stay ours to settle
        claimer.pool = ensure_pool(self.rest, settings)  # first: a failed registration leaves the claimer be
        with self._claim_lock:
            self._worker_name, self._claimer = request.name, claimer
            self._pool_checked = (settings.work_pool, settings.work_queues)
        self.rest.worker_heartbeat(settings.work_pool, request.name, settings.heartbeat_interval)
        crash_lost_runs(self.rest, settings.work_pool, request.name)
        if settings.use_events and self._stream is None:
            if websocket_available():
                self._stream = EventStream(self.rest, on_scheduled=self._run_scheduled, on_cancelling=self._cancel_seen)
                self._stream.start()
            else:
                logger.info("websocket-client is not installed: polling Prefect every %gs", settings.query_interval)
        now = datetime.now(timezone.utc)
        self._record = Agent.model_construct(
            id=f"{settings.work_pool}/{request.name}",
            name=request.name,
            labels=[],
            run_unlabeled=True,
            run_config_types=["prefect-process"],
            hostname=request.hostname,
            version=request.version,
            config_generation=request.config_generation,
            config_hash=request.config_hash,
            config_error=request.config_error,
            registered=now,
            last_heartbeat=now,
            running_runs=[],
            lost=False,
        )
        return self._record

    def _check_pool(self, settings: PrefectSection) -> None:
        """Before a claim: the pool again after a reload named another one, or after it was found deleted."""
        if self._pool_checked != (settings.work_pool, settings.work_queues) or self._claimer.pool is None:
            self._claimer.pool = ensure_pool(self.rest, settings)
            self._pool_checked = (settings.work_pool, settings.work_queues)

    def _pool_call(self, settings: PrefectSection, call: Callable[[], Any]) -> Any:
        """``call()`` on the pool; a 404 means it was deleted: check it again at the next registration."""
        try:
            return call()
        except ApiNotFound:
            self._pool_checked = None  # the next claim checks (and creates, when allowed) it again
            raise pool_gone(self.rest, settings.work_pool) from None

    def disconnect_agent(self, agent_id: str) -> Agent:
        """Nothing to tell Prefect: like its own worker, this one shows offline once its heartbeats stop.

        (Prefect's only call for it deletes the worker from the pool's list, which would hide its history.)
        """
        if self._record is None:
            raise ApiNotFound(404, f"worker {agent_id} never registered")
        return self._record.model_copy(update={"stopped": datetime.now(timezone.utc)})

    def heartbeat(self, agent_id: str, beat: Heartbeat) -> HeartbeatReply:
        settings = self._settings_of()
        name, interval = self._worker_name, settings.heartbeat_interval
        self._pool_call(settings, lambda: self.rest.worker_heartbeat(settings.work_pool, name, interval))
        # Every run the agent lists, also those claimed through an earlier client (a reload changed the key).
        ours = list(beat.running_runs)
        if not ours:
            return HeartbeatReply.model_construct(cancel=[])
        found = {str(run["id"]): run for run in self.rest.existing_flow_runs(ours)}
        cancel = []
        for run_id in ours:
            run = found.get(run_id)
            state = ((run or {}).get("state") or {}).get("type")
            if run is None and run_id not in self._gone:
                self._gone.add(run_id)
                logger.warning("flow run %s was deleted in Prefect while it ran: stopping its process", run_id)
            if run is None or state in ("CANCELLING", "CANCELLED"):
                cancel.append(run_id)
        return HeartbeatReply.model_construct(cancel=cancel)

    # -- claims -------------------------------------------------------------------------------------------

    def claim(self, agent_id: str, request: ClaimRequest) -> ClaimReply:
        deadline = time.monotonic() + request.wait
        settings = self._settings_of()
        while True:
            with self._changed:
                seen = self._generation
            cancel = self._take_cancels()
            runs: list[Any] = []
            next_due: float | None = None
            if request.slots > 0:
                with self._claim_lock:
                    self._check_pool(settings)  # a reload named another pool or other queues: applies from now
                    runs, next_due = self._pool_call(settings, lambda: self._claimer.claim(settings, request.slots))
                for claimed in runs:
                    self._runs[claimed.run.id] = _RunContext(forward=settings.forward_output)
            if runs or cancel:
                return ClaimReply.model_construct(runs=runs, cancel=cancel)
            now = time.monotonic()
            wait = deadline - now
            if wait <= 0:
                return ClaimReply.model_construct(runs=[], cancel=[])
            stream = self._stream
            if request.slots > 0 and (stream is None or not stream.connected):
                wait = min(wait, settings.query_interval)
            if request.slots > 0 and next_due is not None:
                wait = min(wait, max(next_due - now, 0.0) + 0.05)
            with self._changed:
                if self._generation == seen:
                    self._changed.wait(wait)

    def _bump(self) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def _run_scheduled(self, run_id: str, pool_id: str | None) -> None:
        pool = self._claimer.pool
        if pool_id is None or pool is None or pool_id == str(pool.get("id")):
            self._bump()

    def _cancel_seen(self, run_id: str) -> None:
        if run_id in self._runs:
            self._cancelling.add(run_id)
            self._bump()

    def _take_cancels(self) -> list[str]:
        if not self._cancelling:
            return []
        taken = [run_id for run_id in list(self._cancelling) if run_id in self._runs]
        self._cancelling.clear()
        return taken

    # -- a run's states and output ------------------------------------------------------------------------

    def set_state(self, run_id: str, update: StateUpdate) -> FlowRun:
        state = update.state
        if state == StateName.RUNNING:
            if update.pid is not None:
                self.rest.update_flow_run(run_id, {"infrastructure_pid": str(update.pid)})
            return local_run(run_id, state)
        if state not in (StateName.SUCCESS, StateName.FAILED, StateName.CANCELLED, StateName.CRASHED):
            return local_run(run_id, state)
        context = self._runs.get(run_id)
        try:
            report_end(self.rest, run_id, update, context.tail if context is not None else ())
        except ApiNotFound:
            self._runs.pop(run_id, None)  # deleted in Prefect: nothing left to report to
            raise ApiNotFound(404, f"flow run {run_id} no longer exists in Prefect: its end is not reported") from None
        # (ApiUnavailable: the reporter retries, and report_end reads the state again first)
        self._runs.pop(run_id, None)
        return local_run(run_id, state)

    def set_states(self, reports: Sequence[StateReport]) -> StateReportResults:
        results = []
        for report in reports:
            update = StateUpdate(state=report.state, message=report.message, pid=report.pid, exit_code=report.exit_code)
            try:
                self.set_state(report.run_id, update)
            except ApiNotFound as exc:
                results.append(StateReportResult(run_id=report.run_id, status=404, detail=str(exc)))
            except ApiRejected as exc:
                if exc.status_code >= 500:
                    raise
                results.append(StateReportResult(run_id=report.run_id, status=409, detail=str(exc)))
            else:
                results.append(StateReportResult(run_id=report.run_id, status=200, state=report.state))
        return StateReportResults(results=results)

    def append_logs_raw(self, run_id: str, body: bytes, count: int) -> LogBatchResult:
        lines = json.loads(body).get("lines", [])
        return self._take_output(run_id, [(int(li["seq"]), str(li["time"]), li["stream"], li["text"]) for li in lines])

    def append_log_rows(self, run_id: str, rows: list[LogRow]) -> LogBatchResult:
        lines = [
            (seq, datetime.fromtimestamp(when, timezone.utc).isoformat(), stream, text)
            for _, seq, when, stream, text in rows
        ]
        return self._take_output(run_id, lines)

    def _take_output(self, run_id: str, lines: list[tuple[int, str, str, str]]) -> LogBatchResult:
        context = self._runs.get(run_id)
        if context is not None:
            context.tail.extend(text for _, _, _, text in lines)
            if context.forward and run_id not in self._gone:
                forward_output(self.rest, run_id, lines)
        last = max((seq for seq, _, _, _ in lines), default=-1)
        return LogBatchResult(stored=len(lines), last_seq=last)
