"""A Pending proposal whose answer is lost (the server timed out or went away) never strands the run."""

from __future__ import annotations

from typing import Any

import pytest

from localagent.config.model import PrefectSection
from localagent.errors import ApiUnavailable
from localagent.prefect.claims import RunClaimer
from localagent.prefect.jobs import PROCESS_BASE_JOB_TEMPLATE

RUN = {"id": "run-1", "name": "brave-fox", "flow_id": "f", "deployment_id": "d", "expected_start_time": None}


class LossyServer:
    """The REST calls a claim makes, on a server that may commit a proposal and lose its answer."""

    url, key, auth = "http://127.0.0.1:4200/api", None, "bearer"

    def __init__(self, *, commits: bool) -> None:
        self.commits = commits
        self.state: dict[str, Any] = {"type": "SCHEDULED"}
        self.lose_next_answer = True

    def get_scheduled_flow_runs(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return [{"flow_run": dict(RUN)}] if self.state["type"] == "SCHEDULED" else []

    def set_state(self, run_id: str, state: dict[str, Any], *, force: bool = False) -> dict[str, Any]:
        if self.commits or not self.lose_next_answer:
            self.state = state
        if self.lose_next_answer:
            self.lose_next_answer = False
            raise ApiUnavailable("reading the answer timed out")
        return {"status": "ACCEPT", "state": state}

    def read_flow_run(self, run_id: str) -> dict[str, Any]:
        return {**RUN, "state": self.state}

    def read_deployment(self, deployment_id: str) -> dict[str, Any]:
        return {"job_variables": {}}

    def read_flow(self, flow_id: str) -> dict[str, Any]:
        return {"name": "hello"}

    def update_labels(self, run_id: str, labels: dict[str, str]) -> None:
        pass


def _claimer(server: LossyServer) -> RunClaimer:
    claimer = RunClaimer(server, worker_name="host-1")  # type: ignore[arg-type]
    claimer.pool = {"id": "p", "base_job_template": PROCESS_BASE_JOB_TEMPLATE}
    return claimer


def test_a_proposal_that_landed_is_taken_at_the_next_claim() -> None:
    server = LossyServer(commits=True)
    claimer = _claimer(server)
    settings = PrefectSection(work_pool="local")
    with pytest.raises(ApiUnavailable):
        claimer.claim(settings, slots=1)
    assert server.state["type"] == "PENDING"  # ours on the server, though the agent never heard
    claimed, _ = claimer.claim(settings, slots=1)
    assert [run.run.id for run in claimed] == ["run-1"]
    assert claimer.unsettled == {}


def test_a_proposal_that_never_landed_is_forgotten_and_proposed_again() -> None:
    server = LossyServer(commits=False)
    claimer = _claimer(server)
    settings = PrefectSection(work_pool="local")
    with pytest.raises(ApiUnavailable):
        claimer.claim(settings, slots=1)
    assert server.state["type"] == "SCHEDULED"
    claimed, _ = claimer.claim(settings, slots=1)  # not ours yet: proposed again, and accepted this time
    assert [run.run.id for run in claimed] == ["run-1"]
    assert server.state["type"] == "PENDING"
    assert claimer.unsettled == {}
