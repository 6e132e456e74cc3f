"""The orchestrator port, served by a Prefect 3 work pool: the agent acts as a Prefect process worker.

Usage::

    factory = PrefectFactory(settings_of=lambda: agent.loaded.config.prefect)
    api = factory("http://127.0.0.1:4200/api", key, 10.0)     # an Orchestrator (localagent.api.port)
    api.register_agent(AgentRegister(name="host-1"))         # checks (or creates) the pool; heartbeat
    reply = api.claim(agent_id, ClaimRequest(slots=2, wait=10.0))

What each port call means here:

- ``register_agent``: the pool exists (created, type process, when ``prefect.create_pool_if_missing``) and is
  a process pool; the first worker heartbeat; the event stream starts.
- ``claim``: :class:`~localagent.prefect.claims.RunClaimer` (due runs proposed ``PENDING``), woken by the
  event stream, or every ``prefect.query_interval`` while it is down; ``reply.cancel`` lists runs of ours
  the stream saw become ``CANCELLING``.
- ``heartbeat``: the worker heartbeat; runs of ours that are ``CANCELLING``, cancelled or deleted in Prefect
  come back to be stopped.
- ``set_state``: the flow-run engine reports Running and the final state itself; the worker only sets
  ``infrastructure_pid`` at the start, forces ``CANCELLED`` after a cancel or a shutdown, and proposes
  ``CRASHED`` (with the exit code or signal and the last lines of output) when the process ended while the
  run was still ``PENDING``/``RUNNING`` or could not start at all.
- output: kept per run as a short tail for a crash message; sent to the run's Prefect logs only with
  ``prefect.forward_output`` (the engine already ships the flow's own logs; forwarding copies them).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
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
from localagent.errors import ApiConflict, ApiError, ApiNotFound, ApiRejected
from localagent.prefect.claims import HOST_LABEL, RunClaimer
from localagent.prefect.events import EventStream, websocket_available
from localagent.prefect.jobs import PROCESS_BASE_JOB_TEMPLATE, RUN_TOKEN_PREFIX
from localagent.prefect.rest import FINAL_TYPES, PrefectRest, state_body

if TYPE_CHECKING:
    from localagent.api.log_batch import LogRow
    from localagent.config.model import PrefectSection

logger = logging.getLogger("localagent.prefect")

CAPABILITIES = Capabilities(state_batches=True, output_rows=False, web_view=False)
TAIL_LINES = 20
_LEVELS = {"stdout": 20, "stderr": 40, "system": 30}


@dataclass
class _RunContext:
    forward: bool
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))


class PrefectOrchestrator:
    """A Prefect 3 work pool behind the orchestrator port (thread-safe; see the module docstring)."""

    def __init__(self, url: str, key: str | None, timeout: float, *, settings_of: Callable[[], PrefectSection]) -> None:
        self._url = url
        self._settings_of = settings_of
        self.rest = PrefectRest(url, key=key, timeout=timeout)
        self._worker_name = "localagent"
        self._claimer = RunClaimer(self.rest, worker_name=self._worker_name)
        self._claim_lock = threading.Lock()
        self._changed = threading.Condition()
        self._generation = 0  # bumped by every event that may have made a claim worth trying
        self._runs: dict[str, _RunContext] = {}
        self._cancelling: set[str] = set()
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

    def scoped(self, token: str) -> PrefectOrchestrator:
        """Runs report with the agent's key (Prefect has no run tokens); the run is named in every call."""
        return self

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()
        self.rest.close()

    # -- registration, heartbeat -------------------------------------------------------------------------

    def register_agent(self, request: AgentRegister) -> Agent:
        self._worker_name = request.name
        self._claimer = RunClaimer(self.rest, worker_name=request.name)
        settings = self._settings_of()
        self._check_pool(settings)
        self.rest.worker_heartbeat(settings.work_pool, request.name, settings.heartbeat_interval)
        sweep_key = (self.rest.url, settings.work_pool, request.name)
        if sweep_key not in _SWEPT:  # once per agent process: later registrations may see our own live runs
            self._crash_orphans(settings.work_pool, request.name)
            _SWEPT.add(sweep_key)
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
        """The pool exists (created when allowed) and is a process pool; named queues exist (created too)."""
        pool_name = settings.work_pool
        try:
            pool = self.rest.read_work_pool(pool_name)
        except ApiNotFound:
            if not settings.create_pool_if_missing:
                raise ApiNotFound(
                    404, f"work pool {pool_name!r} does not exist (prefect.create_pool_if_missing is false)"
                ) from None
            logger.info("creating Prefect work pool %r (type process)", pool_name)
            try:
                pool = self.rest.create_work_pool(pool_name, PROCESS_BASE_JOB_TEMPLATE)
            except ApiConflict:  # another worker created it meanwhile
                pool = self.rest.read_work_pool(pool_name)
        if pool.get("type") != "process":
            raise ApiRejected(
                409, f"work pool {pool_name!r} is of type {pool.get('type')!r}; localagent serves process pools only"
            )
        if settings.work_queues:
            known = {str(queue.get("name")) for queue in self.rest.read_work_queues(pool_name)}
            for queue in settings.work_queues:
                if queue not in known:
                    logger.info("creating work queue %r in pool %r", queue, pool_name)
                    self.rest.create_work_queue(pool_name, queue)
        self._claimer.pool = pool
        self._pool_checked = (pool_name, settings.work_queues)

    def _crash_orphans(self, pool: str, worker: str) -> None:
        """Runs an earlier agent of this name started on this host and lost (it died): mark them Crashed.

        A Prefect flow run's process gets SIGTERM when its agent dies, but with its output pipes gone it
        cannot report that itself; the next agent started here does, as soon as it registers.
        """
        host = socket.gethostname()
        for run in self.rest.active_flow_runs(pool):
            labels = run.get("labels") or {}
            logger.debug(
                "orphan check: flow run %s, labels %s, pid %s", run.get("id"), labels, run.get("infrastructure_pid")
            )
            if labels.get("prefect.worker.name") != worker or labels.get(HOST_LABEL) != host:
                continue
            run_id = str(run["id"])
            pid = str(run.get("infrastructure_pid") or "")
            if pid.isdigit() and _alive(int(pid)):
                continue  # still running somewhere on this host (not a child of ours): leave it be
            where = f"process {pid}" if pid else "its process had not started"
            message = f"The localagent worker {worker!r} on {host} stopped without reporting this run's end ({where})."
            logger.warning("flow run %s: %s Marking it Crashed.", run_id, message)
            try:
                self.rest.set_state(run_id, state_body(run_id, "CRASHED", "Crashed", message))
            except ApiError as exc:
                logger.error("flow run %s: could not mark it Crashed: %s", run_id, exc)

    def disconnect_agent(self, agent_id: str) -> Agent:
        """Nothing to tell Prefect: like its own worker, this one shows offline once its heartbeats stop.

        (Prefect's only call for it deletes the worker from the pool's list, which would hide its history.)
        """
        if self._record is None:
            raise ApiNotFound(404, f"worker {agent_id} never registered")
        return self._record.model_copy(update={"stopped": datetime.now(timezone.utc)})

    def heartbeat(self, agent_id: str, beat: Heartbeat) -> HeartbeatReply:
        settings = self._settings_of()
        self.rest.worker_heartbeat(settings.work_pool, self._worker_name, settings.heartbeat_interval)
        # Every run the agent lists, also those claimed through an earlier client (a reload changed the key).
        ours = list(beat.running_runs)
        if not ours:
            return HeartbeatReply.model_construct(cancel=[])
        found = {str(run["id"]): run for run in self.rest.existing_flow_runs(ours)}
        cancel = []
        for run_id in ours:
            run = found.get(run_id)
            state = ((run or {}).get("state") or {}).get("type")
            if run is None or state in ("CANCELLING", "CANCELLED"):
                cancel.append(run_id)
        return HeartbeatReply.model_construct(cancel=cancel)

    # -- claims -------------------------------------------------------------------------------------------

    def claim(self, agent_id: str, request: ClaimRequest) -> ClaimReply:
        deadline = time.monotonic() + request.wait
        settings = self._settings_of()
        if self._pool_checked != (settings.work_pool, settings.work_queues):
            self._check_pool(settings)  # a reload named another pool or other queues: applies from now
        while True:
            with self._changed:
                seen = self._generation
            cancel = self._take_cancels()
            runs: list[Any] = []
            next_due: float | None = None
            if request.slots > 0:
                with self._claim_lock:
                    runs, next_due = self._claimer.claim(settings, request.slots)
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
            return _local_run(run_id, state)
        if state not in (StateName.SUCCESS, StateName.FAILED, StateName.CANCELLED, StateName.CRASHED):
            return _local_run(run_id, state)
        context = self._runs.get(run_id)
        try:
            current = ((self.rest.read_flow_run(run_id).get("state")) or {}).get("type")
        except ApiNotFound:
            self._runs.pop(run_id, None)  # deleted in Prefect: nothing left to report to
            raise
        self._final(run_id, update, current, context)  # ApiUnavailable: the reporter retries with the context
        self._runs.pop(run_id, None)
        return _local_run(run_id, state)

    def _final(self, run_id: str, update: StateUpdate, current: str | None, context: _RunContext | None) -> None:
        if update.state == StateName.CANCELLED or current == "CANCELLING":
            if current in ("COMPLETED", "FAILED", "CANCELLED"):
                return
            message = "Flow run was cancelled successfully." if current == "CANCELLING" else update.message
            self.rest.set_state(run_id, state_body(run_id, "CANCELLED", "Cancelled", message), force=True)
            return
        if current in FINAL_TYPES or current not in ("PENDING", "RUNNING"):
            return  # the engine reported its end (or paused / rescheduled the run): nothing to add
        message = _crash_message(update, context)
        logger.warning("flow run %s ended without a final state: marking it Crashed (%s)", run_id, update.message)
        self.rest.set_state(run_id, state_body(run_id, "CRASHED", "Crashed", message))

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
            if context.forward and lines:
                logs = [
                    {
                        "name": "localagent.output",
                        "level": _LEVELS.get(stream, 20),
                        "message": text,
                        "timestamp": when,
                        "flow_run_id": run_id,
                        "task_run_id": None,
                    }
                    for _, when, stream, text in lines
                ]
                self.rest.create_logs(logs)
        last = max((seq for seq, _, _, _ in lines), default=-1)
        return LogBatchResult(stored=len(lines), last_seq=last)


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan whose new parent has not reaped it yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


_SWEPT: set[tuple[str, str, str]] = set()


def _local_run(run_id: str, state: StateName) -> FlowRun:
    """What the port returns for a report: only the id and state mean anything for a Prefect run."""
    now = datetime.now(timezone.utc)
    return FlowRun.model_construct(
        id=run_id,
        name=run_id,
        flow="",
        flow_version=1,
        parameters={},
        labels=[],
        run_config_type="prefect-process",
        scheduled_start=now,
        state=state,
        created=now,
        updated=now,
    )


def _crash_message(update: StateUpdate, context: _RunContext | None) -> str:
    message = f"Flow run process ended before the flow run reached a final state: {update.message}"
    if context is not None and context.tail:
        tail = "\n".join(context.tail)
        message += f"\nLast output lines:\n{tail[-4000:]}"
    return message


class PrefectFactory:
    """``factory(url, key, timeout)`` for the agent (an ``OrchestratorFactory``), one client per call.

    ``settings_of`` gives the ``[prefect]`` table in force, read at every claim and heartbeat, so a reload
    that changes the pool or the queues applies to the next claim.
    """

    def __init__(self, settings_of: Callable[[], PrefectSection]) -> None:
        self._settings_of = settings_of
        self._keys: dict[str, str | None] = {}

    def __call__(self, url: str, key: str | None, timeout: float) -> PrefectOrchestrator:
        if key is not None and key.startswith(RUN_TOKEN_PREFIX):
            key = self._keys.get(url)  # a run's client after a reload moved the API: the agent's key there
        else:
            self._keys[url] = key
        return PrefectOrchestrator(url, key, timeout, settings_of=self._settings_of)
