"""An agent given two ``localagent server`` processes on one PostgreSQL database (``api.url = [A, B]``).

Server A is killed (SIGKILL) in the middle of a batch: the agent carries on through B, and every run runs
exactly once; A started again on its port: the agent returns to it (failback). A reload that adds a server
to the list reaches runs already started: their final state gets through the new server once the old is gone.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from localagent.api.client import ApiClient
from localagent.api.models import FlowRunCreate, FlowSpec, StateName
from tests.e2e.support import Agent, write_config
from tests.pg.support import ServerProcess, pg_database, pg_url, requires_postgres
from tests.ports import free_port
from tests.support.wait import wait_for

pytestmark = requires_postgres
__all__ = ["pg_database", "pg_url"]

RUNS = 30


def health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
        body: dict[str, Any] = json.load(reply)
    return body


def switches(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    counts = {}
    for line in text.splitlines():
        if line.startswith("localagent_api_failovers_total{"):
            direction = line.split('direction="', 1)[1].split('"', 1)[0]
            counts[direction] = float(line.rsplit(" ", 1)[1])
    return counts


class Servers:
    """Server A on a fixed port (so it can come back there) and server B, both on ``database``."""

    def __init__(self, workdir: Path, database: str) -> None:
        self.workdir, self.database = workdir, database
        self.port_a = free_port()
        self.a = self.start_a()
        self.b = ServerProcess(workdir, "b", database)
        self.b.wait_serving()

    def start_a(self) -> ServerProcess:
        server = ServerProcess(self.workdir, "a", self.database, "--address", f"127.0.0.1:{self.port_a}")
        server.wait_serving()
        return server

    def stop(self) -> None:
        self.a.stop()
        self.b.stop()


@pytest.fixture
def servers(pg_url: str, tmp_path: Path) -> Iterator[Servers]:
    running = Servers(tmp_path, pg_url)
    try:
        yield running
    finally:
        running.stop()


def executions(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_killed_server_fails_over_to_the_other_and_back_with_every_run_once(servers: Servers, tmp_path: Path) -> None:
    out = tmp_path / "executions.txt"
    health_port = free_port()
    agent = Agent(
        tmp_path,
        "fleet-1",
        {
            "agent": {"run_unlabeled": True, "max_concurrent_runs": 4},
            "api": {"url": [servers.a.url, servers.b.url], "failback_interval": "1s", "timeout": "5s"},
            "health": {"address": f"127.0.0.1:{health_port}"},
        },
    )
    command = ["sh", "-c", f'echo "$LOCALAGENT_FLOW_RUN_ID" >> {out}; sleep 0.3']
    try:
        with ApiClient(servers.b.url, timeout=10) as api:
            api.register_flow(FlowSpec(name="job", command=command))
            agent.wait_registered(api)
            assert health(health_port)["api"]["url"] == servers.a.url
            runs = [api.create_run(FlowRunCreate(flow="job")).id for _ in range(RUNS)]
            wait_for(lambda: len(executions(out)) >= 6, timeout=60, what="the batch to be under way")
            servers.a.kill()  # mid-batch, with runs running and claims waiting on A

            def all_final() -> bool:
                return all(
                    api.get_run(run).state in (StateName.SUCCESS, StateName.FAILED, StateName.CRASHED) for run in runs
                )

            wait_for(all_final, timeout=120, what="every run to end through server B")
            states = {api.get_run(run).state for run in runs}
            assert states == {StateName.SUCCESS}, agent.stderr
            done = executions(out)
            assert sorted(done) == sorted(runs), "every run ran exactly once"
            assert health(health_port)["api"]["url"] == servers.b.url
            assert f"API {servers.a.url} unreachable" in agent.stderr
            assert f"using {servers.b.url}" in agent.stderr

            servers.a = servers.start_a()  # A is back on its port: the agent returns to it
            wait_for(lambda: health(health_port)["api"]["url"] == servers.a.url, timeout=60, what="failback to A")
            assert f"API {servers.a.url} answers again" in agent.stderr
            counts = switches(health_port)
            assert counts["failover"] >= 1 and counts["failback"] >= 1
            more = [api.create_run(FlowRunCreate(flow="job")).id for _ in range(3)]
            for run in more:
                wait_for(
                    lambda run=run: api.get_run(run).state == StateName.SUCCESS, timeout=60, what="runs after failback"
                )
            assert sorted(executions(out)) == sorted(runs + more)
    finally:
        agent.signal(15)
        agent.wait(60)


def test_a_reload_that_adds_a_server_reaches_runs_already_started(servers: Servers, tmp_path: Path) -> None:
    health_port = free_port()
    sections: dict[str, dict[str, Any]] = {
        "agent": {"run_unlabeled": True},
        "api": {"url": [servers.a.url], "timeout": "5s"},
        "health": {"address": f"127.0.0.1:{health_port}"},
    }
    agent = Agent(tmp_path, "fleet-2", sections)
    release = tmp_path / "release"
    command = ["sh", "-c", f"while [ ! -e {release} ]; do sleep 0.1; done; echo done"]
    try:
        with ApiClient(servers.b.url, timeout=10) as api:
            api.register_flow(FlowSpec(name="waits", command=command))
            agent.wait_registered(api)
            run = api.create_run(FlowRunCreate(flow="waits")).id
            wait_for(lambda: api.get_run(run).state == StateName.RUNNING, timeout=60, what="the run to start")

            sections["api"]["url"] = [servers.a.url, servers.b.url]
            config = tmp_path / "fleet-2.toml"
            write_config(tmp_path / "fleet-2.new", sections)
            os.replace(tmp_path / "fleet-2.new", config)
            wait_for(lambda: len(health(health_port)["api"]["urls"]) == 2, timeout=60, what="the reload")
            assert health(health_port)["config"]["generation"] == 2

            servers.a.kill()
            release.touch()  # the run ends while A is gone: its final state must go through B
            wait_for(lambda: api.get_run(run).state == StateName.SUCCESS, timeout=60, what="the final state via B")
            assert [line.text for line in api.read_logs(run).lines] == ["done"]
            assert health(health_port)["api"]["url"] == servers.b.url
    finally:
        agent.signal(15)
        agent.wait(60)
