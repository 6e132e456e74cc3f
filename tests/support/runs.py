"""Runs seen through the API: claim one by hand, wait for a state, read every line of its output."""

from __future__ import annotations

from collections.abc import Iterable

from localagent.api.client import ApiClient
from localagent.api.models import (
    AgentRegister,
    ClaimedRun,
    ClaimRequest,
    FlowRun,
    FlowRunCreate,
    FlowSpec,
    LogLine,
    StateName,
)
from tests.support.wait import wait_for


def claim_one(admin: ApiClient, spec: FlowSpec) -> ClaimedRun:
    """Register ``spec``, create a run of it and claim it as a fresh agent (the run is Submitted, not started)."""
    admin.register_flow(spec)
    admin.create_run(FlowRunCreate(flow=spec.name))
    agent = admin.register_agent(AgentRegister(name="test-agent", run_unlabeled=True))
    reply = admin.claim(agent.id, ClaimRequest(slots=1, wait=5, run_unlabeled=True))
    assert len(reply.runs) == 1
    return reply.runs[0]


def wait_state(api: ApiClient, run_id: str, states: Iterable[StateName], timeout: float = 30.0) -> FlowRun:
    """The run once it is in one of ``states``."""
    wanted = set(states)

    def reached() -> FlowRun | None:
        run = api.get_run(run_id)
        return run if run.state in wanted else None

    result: FlowRun = wait_for(reached, timeout=timeout, what=f"run {run_id} to reach {sorted(wanted)}")
    return result


def all_logs(api: ApiClient, run_id: str) -> list[LogLine]:
    """Every stored line of the run, in order."""
    lines: list[LogLine] = []
    after = -1
    while page := api.read_logs(run_id, after=after, limit=5000).lines:
        lines.extend(page)
        after = page[-1].seq
    return lines
