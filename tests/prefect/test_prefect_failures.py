"""A Prefect-serving agent when things go wrong: the server restarted, a key refused, the pool or a run deleted."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.e2e.support import wait_for
from tests.prefect.agents import FINAL, pool_name, start_agent, stop_agent, worker_online
from tests.prefect.conftest import MakePrefectServer
from tests.prefect.support import PrefectServer
from tests.support.processes import alive

pytestmark = [pytest.mark.prefect, pytest.mark.timeout(600)]


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_server_restart_mid_run_loses_nothing_and_reports_nothing_twice(
    make_prefect_server: MakePrefectServer, tmp_path: Path
) -> None:
    server = make_prefect_server()
    pool = pool_name()
    agent = start_agent(tmp_path, server, pool, agent={"poll_interval": "1s"}, query_interval="1s")
    try:
        deployment = server.deployment(pool, tmp_path)
        run_id = server.create_run(deployment, parameters={"sleep": 60})
        running = server.wait_state(run_id, {"RUNNING"} | FINAL)
        assert running["state"]["type"] == "RUNNING", running["state"]
        pid = int(running["infrastructure_pid"])
        server.stop()
        wait_for(lambda: "API at" in agent.stderr and "failed" in agent.stderr, timeout=60, what="the outage logged")
        assert alive(pid), "the run must keep running while its server is down"
        server.start()
        back = datetime.now(timezone.utc)
        # The run carries on and its engine reports its end; the worker added nothing of its own.
        run = server.wait_state(run_id, FINAL, timeout=180)
        assert run["state"]["type"] == "COMPLETED", run["state"]
        counts = Counter(server.states(run_id))
        assert counts == Counter({"SCHEDULED": 1, "PENDING": 1, "RUNNING": 1, "COMPLETED": 1}), counts
        # Heartbeats resume, and new runs are picked up: through the event stream once it is followed again.
        wait_for(
            lambda: any(
                worker["name"] == agent.name and _when(worker["last_heartbeat_time"]) > back
                for worker in server.workers(pool)
            ),
            timeout=60,
            what="a worker heartbeat after the restart",
        )
        wait_for(
            lambda: "Prefect event stream connected again" in agent.stderr, timeout=60, what="the stream followed again"
        )
        again = server.wait_state(server.create_run(deployment), FINAL)
        assert again["state"]["type"] == "COMPLETED", again["state"]
        assert "API reachable again" in agent.stderr
        assert agent.popen.poll() is None
    finally:
        stop_agent(agent)


def test_a_refused_key_is_a_clear_error_retried_until_the_right_key_comes(
    make_prefect_server: MakePrefectServer, tmp_path: Path
) -> None:
    server = make_prefect_server(auth_string="admin:s3cret")
    pool = pool_name()
    key_file = tmp_path / "prefect.key"
    key_file.write_text("admin:wrong\n")
    agent = start_agent(
        tmp_path,
        server,
        pool,
        online=False,
        agent={"poll_interval": "1s"},
        api={"key_file": str(key_file)},
        auth="basic",
    )
    try:
        wait_for(
            lambda: "refused the agent's credentials" in agent.stderr, timeout=60, what="the refused key in the log"
        )
        time.sleep(5)  # it keeps trying, with back-off, and never exits
        assert agent.popen.poll() is None, agent.stderr
        assert "HTTP 401" in agent.stderr
        assert "Traceback" not in agent.stderr
        key_file.write_text("admin:s3cret\n")  # the agent re-reads api.key_file on change
        wait_for(lambda: worker_online(server, pool, agent), timeout=60, what="the worker online with the right key")
        # The flow run gets the credentials too (PREFECT_API_AUTH_STRING): it reports its own states.
        deployment = server.deployment(pool, tmp_path)
        run = server.wait_state(server.create_run(deployment), FINAL)
        assert run["state"]["type"] == "COMPLETED", run["state"]
    finally:
        stop_agent(agent)


def test_a_deleted_pool_is_waited_for_or_created_again(prefect_server: PrefectServer, tmp_path: Path) -> None:
    waits, creates = pool_name(), pool_name()
    prefect_server.call("POST", "/work_pools/", {"name": waits, "type": "process"})
    waiting = start_agent(tmp_path, prefect_server, waits, name="la-waits", create_pool_if_missing=False)
    creating = start_agent(tmp_path, prefect_server, creates, name="la-creates")
    try:
        prefect_server.call("DELETE", f"/work_pools/{waits}")
        prefect_server.call("DELETE", f"/work_pools/{creates}")
        wait_for(
            lambda: f"work pool '{waits}' does not exist" in waiting.stderr, timeout=60, what="the missing pool logged"
        )
        assert "waiting for it to be created" in waiting.stderr
        # The agent allowed to create it does so again, and serves it.
        wait_for(lambda: worker_online(prefect_server, creates, creating), timeout=60, what="the pool created again")
        assert creating.stderr.count(f"creating Prefect work pool '{creates}'") >= 2  # at start, and again
        time.sleep(3)
        assert waiting.popen.poll() is None, waiting.stderr
        assert "Traceback" not in waiting.stderr
        with pytest.raises(AssertionError, match="404"):
            prefect_server.call("GET", f"/work_pools/{waits}")  # the other one did not create it
        # Created again by someone else, the pool is served again without a restart.
        prefect_server.call("POST", "/work_pools/", {"name": waits, "type": "process"})
        wait_for(lambda: worker_online(prefect_server, waits, waiting), timeout=60, what="the pool served again")
        for pool in (waits, creates):
            run = prefect_server.wait_state(prefect_server.create_run(prefect_server.deployment(pool, tmp_path)), FINAL)
            assert run["state"]["type"] == "COMPLETED", run["state"]
    finally:
        stop_agent(waiting)
        stop_agent(creating)


def test_a_flow_run_deleted_while_it_runs_is_stopped_once(prefect_server: PrefectServer, tmp_path: Path) -> None:
    pool = pool_name()
    agent = start_agent(tmp_path, prefect_server, pool, agent={"poll_interval": "1s"})
    try:
        deployment = prefect_server.deployment(pool, tmp_path)
        run_id = prefect_server.create_run(deployment, parameters={"sleep": 300})
        running = prefect_server.wait_state(run_id, {"RUNNING"} | FINAL)
        assert running["state"]["type"] == "RUNNING", running["state"]
        pid = int(running["infrastructure_pid"])
        prefect_server.call("DELETE", f"/flow_runs/{run_id}")
        wait_for(lambda: not alive(pid), timeout=60, what=f"the deleted run's process {pid} to be stopped")
        assert f"flow run {run_id} was deleted in Prefect while it ran" in agent.stderr
        # Nothing keeps asking about the run: the log does not grow with it.
        time.sleep(2)
        mentions = agent.stderr.count(run_id)
        time.sleep(5)
        assert agent.stderr.count(run_id) == mentions, agent.stderr
        assert agent.stderr.count(f"flow run {run_id} was deleted") == 1
        # And the agent serves the pool as before.
        run = prefect_server.wait_state(prefect_server.create_run(deployment), FINAL)
        assert run["state"]["type"] == "COMPLETED", run["state"]
    finally:
        stop_agent(agent)
