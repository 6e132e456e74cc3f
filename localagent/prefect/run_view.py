"""A run's channel on the agent's Prefect client, and what the port answers for a Prefect run's report.

Usage::

    channel = RunView(orchestrator)      # what ``orchestrator.scoped(token)`` gives each run
    channel.close()                      # nothing: the agent's client (its event stream) stays open
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from localagent.api.models import FlowRun, LogBatchResult, StateName, StateReport, StateReportResults, StateUpdate
from localagent.api.port import Capabilities

if TYPE_CHECKING:
    from localagent.api.log_batch import LogRow
    from localagent.api.port import Orchestrator


class RunView:
    """A run's channel on the agent's :class:`Orchestrator`; closing it leaves that client open."""

    def __init__(self, orchestrator: Orchestrator) -> None:
        self._orchestrator = orchestrator

    @property
    def url(self) -> str:
        return self._orchestrator.url

    @property
    def capabilities(self) -> Capabilities:
        return self._orchestrator.capabilities

    def set_state(self, run_id: str, update: StateUpdate) -> FlowRun:
        return self._orchestrator.set_state(run_id, update)

    def set_states(self, reports: Sequence[StateReport]) -> StateReportResults:
        return self._orchestrator.set_states(reports)

    def append_logs_raw(self, run_id: str, body: bytes, count: int) -> LogBatchResult:
        return self._orchestrator.append_logs_raw(run_id, body, count)

    def append_log_rows(self, run_id: str, rows: list[LogRow]) -> LogBatchResult:
        return self._orchestrator.append_log_rows(run_id, rows)

    def close(self) -> None:
        pass


def local_run(run_id: str, state: StateName) -> FlowRun:
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
