"""Claiming Prefect flow runs the way a Prefect worker must, so it can share a pool with Prefect's own workers.

Usage::

    claimer = RunClaimer(rest, worker_name="host-1")
    claimed, next_due = claimer.claim(settings, slots=2)    # runs now PENDING and ours; when to look again

One claim: the pool's scheduled runs due now (``get_scheduled_flow_runs``: the server applies the pool's and
the queues' concurrency limits and priorities), soonest first, at most ``slots`` of them; for each,
``PENDING`` is proposed through the server's orchestration (never forced): only an ``ACCEPT`` that leaves
the run ``PENDING`` makes it ours, and then its deployment is read. ``REJECT`` and ``ABORT`` (another worker
took it, or it was cancelled meanwhile) drop it; ``WAIT`` keeps it for a later claim after the delay the server asks.
That proposal is the one place two workers can race, and the server lets exactly one win.
"""

from __future__ import annotations

import logging
import socket
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from localagent.errors import ApiError, ApiNotFound, ApiUnavailable, LaunchError
from localagent.prefect.jobs import claimed_run, job_variables
from localagent.prefect.rest import state_body

if TYPE_CHECKING:
    from localagent.api.models import ClaimedRun
    from localagent.config.model import PrefectSection
    from localagent.prefect.rest import PrefectRest

logger = logging.getLogger("localagent.prefect")

JSONDict = dict[str, Any]
HOST_LABEL = "localagent.host"  # where the run's process is: an agent restarted there can tell it is gone
LOOKAHEAD = 60.0  # seconds: runs due within this window tell the claim loop when to look again


class RunClaimer:
    """Finds due runs of the pool and makes them ours through ``PENDING`` proposals (one thread at a time)."""

    def __init__(self, rest: PrefectRest, *, worker_name: str) -> None:
        self._rest = rest
        self._worker_name = worker_name
        self._flow_names: dict[str, str] = {}
        self._not_before: dict[str, float] = {}  # run id -> monotonic time a WAIT asked us to come back
        # Pending proposals whose answer was lost (the server went away or timed out mid-request), and runs
        # made ours that could not be prepared yet: run id -> (our transition id, the flow run). The next
        # claim settles them first, so a run the server did make Pending for us is never left stranded.
        self.unsettled: dict[str, tuple[str, JSONDict]] = {}
        self.pool: JSONDict | None = None

    def claim(self, settings: PrefectSection, slots: int) -> tuple[list[ClaimedRun], float | None]:
        """Runs made ours (at most ``slots``), and the monotonic time the next known run falls due (or None)."""
        pool = self.pool
        assert pool is not None, "RunClaimer.pool is set by the orchestrator's pool check"
        now = datetime.now(timezone.utc)
        scheduled = self._rest.get_scheduled_flow_runs(
            settings.work_pool,
            settings.work_queues,
            scheduled_before=now + timedelta(seconds=LOOKAHEAD),
            limit=max(slots, 1) + 16,
        )
        claimed = self._settle(pool, settings, slots)
        next_due: float | None = None
        clock = time.monotonic()
        for item in scheduled:
            flow_run = item.get("flow_run") or {}
            run_id = str(flow_run.get("id", ""))
            due_in = _seconds_until(flow_run.get("next_scheduled_start_time") or flow_run.get("expected_start_time"))
            waited = self._not_before.get(run_id, 0.0) - clock
            due_in = max(due_in, waited)
            if due_in > 0:
                next_due = min(next_due, clock + due_in) if next_due is not None else clock + due_in
                continue
            if len(claimed) >= slots:
                next_due = clock  # more is due than we had slots for: look again once one frees up
                break
            try:
                run = self._take(flow_run, pool, settings)
            except ApiUnavailable:
                if not claimed:
                    raise  # the caller backs off; the proposal, if it landed, is settled at the next claim
                next_due = clock
                break  # the runs already ours start now
            if run is not None:
                claimed.append(run)
        if len(self._not_before) > 1000:
            self._not_before = {k: v for k, v in self._not_before.items() if v > clock}
        return claimed, next_due

    def _settle(self, pool: JSONDict, settings: PrefectSection, slots: int) -> list[ClaimedRun]:
        """Runs of :attr:`unsettled` that are ours (``PENDING`` with our transition id), prepared now."""
        claimed: list[ClaimedRun] = []
        for run_id, (transition, _flow_run) in list(self.unsettled.items()):
            if len(claimed) >= slots:
                break
            try:
                run = self._settle_one(run_id, transition, pool, settings)
            except ApiUnavailable:
                if not claimed:
                    raise
                break  # the runs already ours start now; the rest wait for the next claim
            if run is not None:
                claimed.append(run)
        return claimed

    def _settle_one(self, run_id: str, transition: str, pool: JSONDict, settings: PrefectSection) -> ClaimedRun | None:
        try:
            current = self._rest.read_flow_run(run_id)
        except ApiNotFound:
            self.unsettled.pop(run_id, None)
            return None
        state = current.get("state") or {}
        if state.get("type") != "PENDING" or (state.get("state_details") or {}).get("transition_id") != transition:
            self.unsettled.pop(run_id, None)  # the proposal never landed, or the run moved on since
            return None
        logger.info(
            "flow run %s: the server had made it ours (Pending) before its answer was lost; starting it", run_id
        )
        return self._accepted(current, transition, pool, settings)

    def _take(self, flow_run: JSONDict, pool: JSONDict, settings: PrefectSection) -> ClaimedRun | None:
        run_id = str(flow_run["id"])
        # Proposed first, the deployment read after: one round trip less before the run is ours (the server
        # applies the deployment's concurrency limit to the proposal itself).
        proposal = state_body(run_id, "PENDING", "Pending")
        transition = str(proposal["state_details"]["transition_id"])
        try:
            reply = self._rest.set_state(run_id, proposal)
        except ApiUnavailable:
            self.unsettled[run_id] = (transition, flow_run)  # its answer lost, maybe not the proposal
            raise
        status = reply.get("status")
        state_type = (reply.get("state") or {}).get("type")
        if status == "WAIT":
            delay = float((reply.get("details") or {}).get("delay_seconds") or 1.0)
            self._not_before[run_id] = time.monotonic() + delay
            logger.debug("flow run %s: the server asked to wait %gs before proposing Pending", run_id, delay)
            return None
        if status != "ACCEPT" or state_type != "PENDING":
            reason = (reply.get("details") or {}).get("reason") or status
            logger.debug("flow run %s: not ours (%s: %s)", run_id, status, reason)
            return None
        self._not_before.pop(run_id, None)
        return self._accepted(flow_run, transition, pool, settings)

    def _accepted(
        self, flow_run: JSONDict, transition: str, pool: JSONDict, settings: PrefectSection
    ) -> ClaimedRun | None:
        """A run made ours, prepared to start (None: it cannot be, and was marked Crashed)."""
        run_id = str(flow_run["id"])
        deployment: JSONDict | None = None
        if flow_run.get("deployment_id"):
            try:
                deployment = self._rest.read_deployment(str(flow_run["deployment_id"]))
            except ApiNotFound:
                self.unsettled.pop(run_id, None)
                self._crash(run_id, "localagent could not start this flow run: its deployment no longer exists")
                return None
            except ApiUnavailable:
                self.unsettled[run_id] = (transition, flow_run)  # ours all the same: prepared at the next claim
                raise
        self.unsettled.pop(run_id, None)
        self._label(run_id, pool, settings)
        flow_name = self._flow_name(str(flow_run.get("flow_id", "")))
        try:
            variables = job_variables(pool, deployment, flow_run)
            return claimed_run(
                flow_run,
                flow_name,
                variables,
                settings,
                api_url=self._rest.url,
                key=self._rest.key,
                auth=self._rest.auth,
            )
        except (LaunchError, ValueError, TypeError) as exc:
            message = f"localagent could not prepare this flow run: {exc}"
            logger.warning("flow run %s: %s", run_id, message)
            self._crash(run_id, message)
            return None

    def _label(self, run_id: str, pool: JSONDict, settings: PrefectSection) -> None:
        labels = {
            "prefect.worker.name": self._worker_name,
            "prefect.worker.type": "process",
            "prefect.work-pool.name": settings.work_pool,
            "prefect.work-pool.id": str(pool.get("id", "")),
            HOST_LABEL: socket.gethostname(),
        }
        try:
            self._rest.update_labels(run_id, labels)
        except ApiError as exc:  # cosmetic: the run is ours whatever the labels say
            logger.debug("flow run %s: could not set its worker labels: %s", run_id, exc)

    def _flow_name(self, flow_id: str) -> str:
        name = self._flow_names.get(flow_id)
        if name is None:
            try:
                name = str(self._rest.read_flow(flow_id).get("name") or flow_id)
            except ApiError as exc:  # only a label for the console: never a reason to drop a run we hold
                logger.debug("flow %s: name not read (%s)", flow_id, exc)
                return f"flow-{flow_id[:8]}"
            if len(self._flow_names) > 1000:
                self._flow_names.clear()
            self._flow_names[flow_id] = name
        return name

    def _crash(self, run_id: str, message: str) -> None:
        try:
            self._rest.set_state(run_id, state_body(run_id, "CRASHED", "Crashed", message))
        except ApiError as exc:
            logger.error("flow run %s: could not mark it Crashed (%s): %s", run_id, message, exc)


def _seconds_until(moment: object) -> float:
    if not isinstance(moment, str):
        return 0.0
    try:
        when = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return (when - datetime.now(timezone.utc)).total_seconds()
