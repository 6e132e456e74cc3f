"""Reloads that move a Prefect-serving agent: to Prefect from localagent's API, to another Prefect server,
and an agent restarted on the state_dir of one that died with its watchdog (its runs reported through the port).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from localagent.api.client import ApiClient
from localagent.api.models import FlowRunCreate, FlowSpec, StateName
from tests.conftest import MakeApiServer
from tests.e2e.support import Agent, wait_for, wait_state, write_config
from tests.prefect.agents import FINAL, pool_name, sections, start_agent, worker_online
from tests.prefect.conftest import MakePrefectServer
from tests.prefect.support import PrefectServer
from tests.support.processes import alive

pytestmark = [pytest.mark.prefect, pytest.mark.timeout(600)]


def _agent_table(tmp_path: Path, name: str) -> dict[str, Any]:
    return {"name": name, "poll_interval": "1s", "state_dir": str(tmp_path / f"{name}-state"), "hostname_label": False}


def test_a_reload_moves_new_claims_to_prefect_and_then_to_another_prefect_server(
    prefect_server: PrefectServer,
    make_prefect_server: MakePrefectServer,
    make_api_server: MakeApiServer,
    tmp_path: Path,
) -> None:
    local_api = make_api_server()
    config = tmp_path / "mover.toml"
    agent = Agent(
        tmp_path,
        "mover",
        {"agent": {**_agent_table(tmp_path, "mover"), "run_unlabeled": True}, "api": {"url": local_api.url}},
    )
    try:
        with ApiClient(local_api.url) as api:
            agent.wait_registered(api)
            api.register_flow(FlowSpec(name="slow", command=[sys.executable, "-c", "import time; time.sleep(10)"]))
            local_run = api.create_run(FlowRunCreate(flow="slow"))
            wait_state(api, local_run.id, [StateName.RUNNING])
            # Only api.kind and api.url change: new claims go to the Prefect pool ...
            pool = pool_name()
            write_config(config, sections(prefect_server, pool, agent=_agent_table(tmp_path, "mover")))
            wait_for(
                lambda: worker_online(prefect_server, pool, agent), timeout=60, what="the worker online in Prefect"
            )
            deployment = prefect_server.deployment(pool, tmp_path)
            first = prefect_server.create_run(deployment, parameters={"sleep": 300})
            running = prefect_server.wait_state(first, {"RUNNING"} | FINAL)
            assert running["state"]["type"] == "RUNNING", running["state"]
            # ... while the run localagent's API handed out reports its end there.
            ended = wait_state(api, local_run.id, [StateName.SUCCESS, StateName.FAILED, StateName.CRASHED], timeout=60)
            assert ended.state == StateName.SUCCESS, ended
        # Another Prefect server: new claims go there; the run the first one handed out stays its own: a cancel
        # there still reaches the agent (its heartbeats to the server left behind) and ends Cancelled there.
        other = make_prefect_server()
        write_config(config, sections(other, pool, agent=_agent_table(tmp_path, "mover")))
        wait_for(lambda: worker_online(other, pool, agent), timeout=60, what="the worker online on the other server")
        there = other.wait_state(other.create_run(other.deployment(pool, tmp_path)), FINAL)
        assert there["state"]["type"] == "COMPLETED", there["state"]
        pid = int(running["infrastructure_pid"])
        assert alive(pid)
        prefect_server.call(
            "POST", f"/flow_runs/{first}/set_state", {"state": {"type": "CANCELLING", "name": "Cancelling"}}
        )
        cancelled = prefect_server.wait_state(first, {"CANCELLED"}, timeout=90)
        assert cancelled["state"]["type"] == "CANCELLED"
        wait_for(lambda: not alive(pid), timeout=30, what=f"pid {pid} to be gone")
        assert f"new claims go to prefect:{other.url}" in agent.stderr
    finally:
        agent.signal(signal.SIGTERM)
        agent.signal(signal.SIGTERM)
        agent.wait(60)


def test_a_run_left_by_an_agent_and_watchdog_killed_is_reported_crashed_to_prefect(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    pool = pool_name()
    state_dir = str(tmp_path / "shared-state")
    first = start_agent(tmp_path, prefect_server, pool, name="la-first", agent={"state_dir": state_dir})
    # A command that shrugs off the SIGTERM the agent's death sends: only the next agent can stop it.
    stubborn = prefect_server.deployment(pool, tmp_path, job_variables={"command": "sh -c 'trap \"\" TERM; sleep 300'"})
    run_id = prefect_server.create_run(stubborn)
    wait_for(lambda: prefect_server.run(run_id)["infrastructure_pid"], timeout=60, what="the run's process")
    pid = int(prefect_server.run(run_id)["infrastructure_pid"])
    for watchdog in _watchdogs_of(first.popen.pid):
        os.kill(watchdog, signal.SIGKILL)
    first.kill()
    first.wait(30)
    assert alive(pid)
    # Another agent (another worker name: not the one whose runs a registration sweeps) on the same state_dir.
    second = start_agent(tmp_path, prefect_server, pool, name="la-second", agent={"state_dir": state_dir})
    try:
        wait_for(lambda: not alive(pid), timeout=60, what="the left run stopped by the next agent")
        run = prefect_server.wait_state(run_id, FINAL, timeout=60)
        assert run["state"]["type"] == "CRASHED", run["state"]
        assert "the agent running it died" in run["state"]["message"]
        assert "of an earlier agent reported Crashed" in second.stderr
    finally:
        second.signal(signal.SIGTERM)
        second.wait(60)


def _watchdogs_of(agent_pid: int) -> list[int]:
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == agent_pid and b"localagent.agent.processes.watchdog" in cmdline:
            found.append(int(proc.name))
    assert found, "the agent's watchdog"
    return found
