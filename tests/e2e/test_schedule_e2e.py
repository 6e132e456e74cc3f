"""An embedded agent runs a flow on its schedule by itself (interval 2s), and stops when it is paused."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from localagent.api.client import ApiClient
from localagent.api.models import StateName
from tests.e2e.support import LOCALAGENT, Agent, wait_for
from tests.ports import free_port

FLOWS = """\
[[flow]]
name = "ticker"
command = "date +%s.%N >> {out}"

[[flow.schedules]]
interval = "2s"
overlap = "skip"
"""


@pytest.fixture
def agent_url(tmp_path: Path) -> Iterator[tuple[Agent, str]]:
    url = f"http://127.0.0.1:{free_port()}"
    config = {
        "api": {"url": "embedded"},
        "server": {"address": url.removeprefix("http://")},
        "agent": {"run_unlabeled": True},
    }
    agent = Agent(tmp_path, "sched", config)
    yield agent, url
    agent.kill()


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALAGENT_")}
    env.update(LOCALAGENT_API_URL=url, COLUMNS="200")
    return subprocess.run([LOCALAGENT, *args], env=env, capture_output=True, text=True, timeout=60)


def test_embedded_agent_runs_an_interval_schedule_by_itself(tmp_path: Path, agent_url: tuple[Agent, str]) -> None:
    agent, url = agent_url
    out = tmp_path / "ticks.txt"
    flows = tmp_path / "flows.toml"
    flows.write_text(FLOWS.format(out=out))
    with ApiClient(url) as api:
        agent.wait_registered(api)
        applied = _cli(url, "flow", "apply", "-f", str(flows))
        assert applied.returncode == 0, applied.stderr

        def three_done() -> bool:
            runs = api.list_runs(flow="ticker")
            return sum(run.state is StateName.SUCCESS for run in runs) >= 3

        wait_for(three_done, timeout=60, what="three scheduled runs to succeed")
        assert len(out.read_text().splitlines()) >= 3
        runs = api.list_runs(flow="ticker")
        assert all(run.schedule == "ticker/1" and run.nominal_time is not None for run in runs)
        nominal = sorted(run.nominal_time for run in runs if run.nominal_time is not None)
        assert len(set(nominal)) == len(nominal)  # one run per fire time
        assert all(round((b - a).total_seconds()) % 2 == 0 for a, b in pairwise(nominal))

        listing = _cli(url, "flow", "schedule", "ls", "ticker")
        assert listing.returncode == 0 and "ticker/1" in listing.stdout and "every 2s" in listing.stdout
        paused = _cli(url, "flow", "schedule", "pause", "ticker")
        assert paused.returncode == 0, paused.stderr
        wait_for(lambda: all(run.state.is_final for run in api.list_runs(flow="ticker")), what="runs to end")
        count = len(api.list_runs(flow="ticker"))
        time.sleep(5)  # two and a half intervals: a schedule still running would have made a run
        assert len(api.list_runs(flow="ticker")) == count
