"""Helpers for the end-to-end tests of the API commands: run the installed binary, act as an agent."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from localagent.api.client import ApiClient
from localagent.api.models import AgentRegister, ClaimedRun, ClaimRequest, LogLine, StateName, StateUpdate

CLI_TIMEOUT = 60


def cli_env(url: str, key: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALAGENT_")}
    env["LOCALAGENT_API_URL"] = url
    if key is not None:
        env["LOCALAGENT_API_KEY"] = key
    env["COLUMNS"] = "200"
    return env


def cli(url: str, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``localagent ARGS`` against the API at ``url``."""
    return subprocess.run(
        ["localagent", *args],
        env=cli_env(url, key),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def cli_json(url: str, *args: str) -> Any:
    result = cli(url, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def start_cli(url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["localagent", *args],
        env=cli_env(url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class ActingAgent:
    """Plays the agent through the client: claims a run, reports it Running, ships lines, ends it."""

    def __init__(self, url: str, name: str = "test-agent") -> None:
        self.api = ApiClient(url)
        self.agent = self.api.register_agent(AgentRegister(name=name, run_unlabeled=True))

    def close(self) -> None:
        self.api.close()

    def claim_one(self, wait: float = 20.0) -> ClaimedRun:
        for _ in range(10):
            reply = self.api.claim(self.agent.id, ClaimRequest(slots=1, wait=wait, run_unlabeled=True))
            if reply.runs:
                return reply.runs[0]
        raise AssertionError("no run to claim")

    def play(self, claimed: ClaimedRun, output: Sequence[str], final: StateName, exit_code: int | None) -> None:
        run_id = claimed.run.id
        with ApiClient(self.api.url, key=claimed.token) as run_api:
            run_api.set_state(run_id, StateUpdate(state=StateName.RUNNING, pid=4242, message="started"))
            now = datetime.now(timezone.utc)
            lines = [
                LogLine(
                    seq=claimed.next_log_seq + i, time=now, text=text, stream="stderr" if "err" in text else "stdout"
                )
                for i, text in enumerate(output)
            ]
            if lines:
                run_api.append_logs(run_id, lines)
            message = "" if exit_code in (None, 0) else f"process exited with code {exit_code}"
            run_api.set_state(run_id, StateUpdate(state=final, exit_code=exit_code, message=message))
