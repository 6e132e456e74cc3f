"""localagent serving a real Prefect 3 work pool: runs complete, cancel, crash, share a pool, follow reloads."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.support import wait_for, write_config
from tests.prefect.agents import FINAL, pool_name, sections, start_agent, stop_agent
from tests.prefect.support import PrefectServer
from tests.support.processes import alive

pytestmark = [pytest.mark.prefect, pytest.mark.timeout(600)]


def test_a_deployed_flow_completes_with_its_parameters_env_and_logs(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    pool = pool_name()
    agent = start_agent(tmp_path, prefect_server, pool, forward_output=True)
    try:
        deployment = prefect_server.deployment(pool, tmp_path, job_variables={"env": {"GREETING": "bonjour"}})
        run_id = prefect_server.create_run(deployment, parameters={"name": "bob"})
        run = prefect_server.wait_state(run_id, FINAL)
        assert run["state"]["type"] == "COMPLETED", run["state"]
        assert run["infrastructure_pid"]
        assert run["labels"]["prefect.worker.name"] == agent.name
        assert run["labels"]["prefect.work-pool.name"] == pool
        # The server stores logs a moment after it acknowledges them.
        wait_for(
            lambda: any("hello bob greeting=bonjour" in line for line in prefect_server.logs(run_id)),
            timeout=30,
            what="the flow's log line in Prefect",
        )
        assert f"[hello/{run['name']}] printed by the flow" in agent.stdout
        # print() is not a Prefect log (no log_prints): it reaches Prefect only through forward_output.
        wait_for(lambda: "printed by the flow" in prefect_server.logs(run_id), timeout=30, what="the forwarded output")
    finally:
        stop_agent(agent)


def test_cancel_from_the_api_stops_the_process_group_and_ends_cancelled(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    pool = pool_name()
    agent = start_agent(tmp_path, prefect_server, pool)
    try:
        deployment = prefect_server.deployment(pool, tmp_path)
        run_id = prefect_server.create_run(deployment, parameters={"sleep": 300})
        running = prefect_server.wait_state(run_id, {"RUNNING"} | FINAL)
        assert running["state"]["type"] == "RUNNING"
        pid = int(running["infrastructure_pid"])
        prefect_server.call(
            "POST", f"/flow_runs/{run_id}/set_state", {"state": {"type": "CANCELLING", "name": "Cancelling"}}
        )
        # The engine, sent SIGTERM, may force Crashed on its way out; the agent then forces Cancelled.
        run = prefect_server.wait_state(run_id, {"CANCELLED"}, timeout=90)
        assert run["state"]["type"] == "CANCELLED", run["state"]
        wait_for(lambda: not alive(pid), timeout=30, what=f"pid {pid} to be gone")
    finally:
        stop_agent(agent)


def test_an_agent_killed_mid_run_leaves_the_run_crashed_and_nothing_running(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    pool = pool_name()
    agent = start_agent(tmp_path, prefect_server, pool)
    try:
        deployment = prefect_server.deployment(pool, tmp_path)
        run_id = prefect_server.create_run(deployment, parameters={"sleep": 300})
        running = prefect_server.wait_state(run_id, {"RUNNING"} | FINAL)
        assert running["state"]["type"] == "RUNNING"
        pid = int(running["infrastructure_pid"])
    finally:
        agent.kill()  # SIGKILL: no drain, no goodbye; and no agent started again
    # The kernel sends the run SIGTERM (its parent-death signal) and the watchdog lets it end; the engine
    # cannot report with its stderr pipe gone, so the watchdog proposes Crashed with the agent's key.
    run = prefect_server.wait_state(run_id, FINAL, timeout=90)
    assert run["state"]["type"] == "CRASHED", run["state"]
    assert "worker running this flow run died" in run["state"]["message"], run["state"]
    wait_for(lambda: not alive(pid), timeout=30, what=f"pid {pid} to be gone")
    wait_for(lambda: not _group_alive(pid), timeout=30, what=f"process group {pid} to be empty")


def _group_alive(pgid: int) -> bool:
    """A live (not zombie) process is in process group ``pgid``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def test_runs_that_cannot_start_or_die_without_a_final_state_end_crashed(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    pool = pool_name()
    agent = start_agent(tmp_path, prefect_server, pool)
    try:
        missing = prefect_server.deployment(pool, tmp_path, job_variables={"working_dir": str(tmp_path / "nowhere")})
        dies = prefect_server.deployment(
            pool, tmp_path, job_variables={"command": "sh -c 'echo about to fail >&2; exit 3'"}
        )
        no_python = prefect_server.deployment(pool, tmp_path, job_variables={"command": "/no/such/python -m x"})
        runs = {
            key: prefect_server.create_run(dep)
            for key, dep in (("missing", missing), ("dies", dies), ("py", no_python))
        }
        ended = {key: prefect_server.wait_state(run_id, FINAL) for key, run_id in runs.items()}
        for run in ended.values():
            assert run["state"]["type"] == "CRASHED", run["state"]
        assert "does not exist" in ended["missing"]["state"]["message"]
        assert "code 3" in ended["dies"]["state"]["message"]
        assert "about to fail" in ended["dies"]["state"]["message"]
        assert "/no/such/python" in ended["py"]["state"]["message"]
    finally:
        stop_agent(agent)


def test_a_reload_switches_the_queues_live(prefect_server: PrefectServer, tmp_path: Path) -> None:
    pool = pool_name()
    agent = start_agent(tmp_path, prefect_server, pool, work_queues=["alpha"])
    try:
        deployment = prefect_server.deployment(pool, tmp_path, queue="beta")
        run_id = prefect_server.create_run(deployment)
        time.sleep(5)  # the agent takes only queue alpha: the run must still wait
        assert prefect_server.state(run_id) == "SCHEDULED"
        write_config(
            tmp_path / f"{agent.name}.toml",
            sections(prefect_server, pool, work_queues=["beta"])
            | {
                "agent": {
                    "poll_interval": "5s",
                    "name": agent.name,
                    "state_dir": str(tmp_path / "la-state"),
                    "hostname_label": False,
                }
            },
        )
        run = prefect_server.wait_state(run_id, FINAL)
        assert run["state"]["type"] == "COMPLETED", run["state"]
        assert "prefect.work_queues" in agent.stderr
    finally:
        stop_agent(agent)


SHARED_RUNS = int(os.environ.get("LOCALAGENT_TEST_PREFECT_SHARED_RUNS", "40"))


@pytest.mark.timeout(300 + 15 * SHARED_RUNS)  # every run starts a Python that imports prefect
def test_localagent_and_prefects_own_worker_share_a_pool_each_run_once(
    prefect_server: PrefectServer, tmp_path: Path
) -> None:
    count = SHARED_RUNS
    pool = pool_name()
    agent_limit = 4  # each of the two workers: the flow runs' Python start-up is what loads the machine
    agent = start_agent(tmp_path, prefect_server, pool, name="la-shared", limit=agent_limit)
    worker_log = open(tmp_path / "prefect-worker.log", "wb")  # noqa: SIM115  (closed below)
    worker = subprocess.Popen(
        [
            prefect_server.python,
            "-m",
            "prefect",
            "worker",
            "start",
            "--pool",
            pool,
            "--type",
            "process",
            "--name",
            "prefect-own",
            "--limit",
            str(agent_limit),
        ],
        stdout=worker_log,
        stderr=subprocess.STDOUT,
        env={**prefect_server.env, "PREFECT_WORKER_QUERY_SECONDS": "1"},
        start_new_session=True,
    )
    try:
        deployment = prefect_server.deployment(pool, tmp_path)
        run_ids = [prefect_server.create_run(deployment, parameters={"name": str(i)}) for i in range(count)]
        ended = [prefect_server.wait_state(run_id, FINAL, timeout=60 + 10 * count) for run_id in run_ids]
        assert [run["state"]["type"] for run in ended] == ["COMPLETED"] * count
        assert [run["run_count"] for run in ended] == [1] * count  # each run ran exactly once
        takers = {run["labels"].get("prefect.worker.name") for run in ended}
        assert "la-shared" in takers
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
        worker_log.close()
        stop_agent(agent)
