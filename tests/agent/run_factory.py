"""Builds ClaimedRun models for unit tests of the run side (no server needed)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from localagent.api.models import ClaimedRun, Flow, FlowRun, RunConfig, StateName


def make_claimed(
    command: list[str] | str = ("true",),  # type: ignore[assignment]
    *,
    run_config: dict[str, Any] | None = None,
    parameters: dict[str, Any] | None = None,
    timeout: float | None = None,
    token: str = "run-token-1",
    next_log_seq: int = 0,
) -> ClaimedRun:
    now = datetime.now(timezone.utc)
    config = RunConfig.model_validate(run_config or {})
    flow = Flow(
        name="hello",
        command=list(command) if isinstance(command, tuple) else command,
        run_config=config,
        parameters={},
        timeout=timeout,
        version=1,
        created=now,
    )
    run = FlowRun(
        id="run-1",
        name="brave-fox",
        flow="hello",
        flow_version=1,
        parameters=parameters or {},
        labels=[],
        run_config_type=config.type,
        scheduled_start=now,
        state=StateName.SUBMITTED,
        created=now,
        updated=now,
    )
    return ClaimedRun(run=run, flow=flow, token=token, next_log_seq=next_log_seq)
