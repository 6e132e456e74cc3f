"""No run process outlives its agent unsupervised: kill -9 of the agent, its watchdog, and daemonizing runs."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from localagent.agent.processes.ledger import LEDGER_DIR
from localagent.api.client import ApiClient
from localagent.api.models import FlowRunCreate, FlowSpec, StateName
from localagent.server.runner import ServerThread
from tests.conftest import MakeApiServer
from tests.e2e.support import Agent, wait_for, wait_state
from tests.support.processes import alive

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

# Double fork + setsid: the grandchild leaves the run's session and process group, then the run exits.
DAEMONIZE = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open(sys.argv[1] + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(sys.argv[1] + ".tmp", sys.argv[1])
        time.sleep(300)
    os._exit(0)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
print("daemon started", flush=True)
"""


def watchdog_pids(agent_pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"localagent.agent.processes.watchdog" in cmdline and str(agent_pid).encode() in cmdline:
            found.append(int(name))
    return found


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        agent.kill()


def _config(url: str, state_dir: Path, pidfile: Path) -> dict[str, dict[str, object]]:
    return {
        "api": {"url": url},
        "agent": {"run_unlabeled": True, "state_dir": str(state_dir)},
    }


def test_a_daemon_that_escapes_its_run_is_stopped_when_the_run_ends(
    tmp_path: Path, api_server: ServerThread, agents: list[Agent]
) -> None:
    pidfile = tmp_path / "daemon.pid"
    agent = Agent(tmp_path, "a1", {"api": {"url": api_server.url}, "agent": {"run_unlabeled": True}})
    agents.append(agent)
    with ApiClient(api_server.url) as api:
        agent.wait_registered(api)
        api.register_flow(FlowSpec(name="daemon", command=[sys.executable, "-c", DAEMONIZE, str(pidfile)]))
        run = api.create_run(FlowRunCreate(flow="daemon"))
        final = wait_state(api, run.id, [StateName.SUCCESS, StateName.FAILED])
        assert final.state == StateName.SUCCESS
        daemon = int(pidfile.read_text())
        wait_for(lambda: not alive(daemon), what=f"the daemon (pid {daemon}) to be stopped")
    assert "stopped 1 process(es) it left running" in agent.stderr
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0


def test_kill_9_of_the_agent_stops_its_runs_at_once_and_their_retries_never_overlap(
    tmp_path: Path, make_api_server: MakeApiServer, agents: list[Agent]
) -> None:
    server = make_api_server(agent_timeout=3.0, sweep_interval=0.5)
    pidfile = tmp_path / "daemon.pid"
    # A silent agent's runs are retried elsewhere only by policy: the agent stops its runs when cut off
    # ("stop"), and the flows allow it (retry_lost); see docs/operations.md, "Network partitions".
    config = _config(server.url, tmp_path / "state", pidfile)
    config["runs"] = {"on_api_lost": "stop", "api_lost_after": "1s", "stop_grace": "1s"}
    agent = Agent(tmp_path, "a1", config)
    agents.append(agent)
    with ApiClient(server.url) as api:
        agent.wait_registered(api)
        runs, pids, _ = _start_runs_with_daemon(api, pidfile, 3, retries=1, retry_lost=True)
        daemon = int(pidfile.read_text())
        assert all(alive(pid) for pid in [*pids, daemon])
        agent.kill()
        for pid in [*pids, daemon]:
            wait_for(lambda pid=pid: not alive(pid), what=f"run process {pid} to be stopped by the watchdog")
        # The API finds the agent lost and retries the runs on another agent: never next to the originals.
        second = Agent(tmp_path, "a2", _config(server.url, tmp_path / "state-2", tmp_path / "daemon-2.pid"))
        agents.append(second)
        for run_id in runs:
            wait_for(
                lambda run_id=run_id: (
                    api.get_run(run_id).attempt == 2 and api.get_run(run_id).state == StateName.RUNNING
                ),
                timeout=60,
                what=f"run {run_id} to be retried",
            )
            assert api.get_run(run_id).agent_name == "a2"
        assert not any(alive(pid) for pid in [*pids, daemon])


def test_a_restarted_agent_stops_what_a_dead_agent_and_watchdog_left_and_reports_it_crashed(
    tmp_path: Path, api_server: ServerThread, agents: list[Agent]
) -> None:
    pidfile = tmp_path / "daemon.pid"
    state_dir = tmp_path / "state"
    first = Agent(tmp_path, "a1", _config(api_server.url, state_dir, pidfile))
    agents.append(first)
    with ApiClient(api_server.url) as api:
        first.wait_registered(api)
        runs, pids, _ = _start_runs_with_daemon(api, pidfile, 3)
        daemon = int(pidfile.read_text())
        (watchdog,) = watchdog_pids(first.popen.pid)
        os.kill(watchdog, signal.SIGKILL)  # the watchdog dies first (say, the OOM killer took both)
        wait_for(lambda: not alive(watchdog), what="the watchdog to die")
        first.kill()
        assert sorted((state_dir / LEDGER_DIR).glob("*.json")), "the ledger lists the runs"
        assert all(alive(pid) for pid in [*pids, daemon]), "nothing stopped them: they run unsupervised"

        second = Agent(tmp_path, "a2", _config(api_server.url, state_dir, pidfile))
        agents.append(second)
        second.wait_registered(api)
        for pid in [*pids, daemon]:
            assert not alive(pid), "stopped before the new agent registered (and so before its first claim)"
        for run_id in runs:
            final = wait_state(api, run_id, [StateName.CRASHED])
            assert "the agent running it died" in final.state_message
        wait_for(lambda: not list((state_dir / LEDGER_DIR).glob("*.json")), what="the ledger to be emptied")
    assert "was still running unsupervised: stopped" in second.stderr


def _start_runs_with_daemon(
    api: ApiClient, pidfile: Path, count: int, retries: int = 0, retry_lost: bool = False
) -> tuple[list[str], list[int], Path]:
    api.register_flow(FlowSpec(name="long", command=["sleep", "120"], retries=retries, retry_lost=retry_lost))
    script = DAEMONIZE + "time.sleep(120)\n"
    command = [sys.executable, "-c", script, str(pidfile)]
    api.register_flow(FlowSpec(name="daemon", command=command, retries=retries, retry_lost=retry_lost))
    runs = [api.create_run(FlowRunCreate(flow="long")).id for _ in range(count)]
    runs.append(api.create_run(FlowRunCreate(flow="daemon")).id)
    pids = [wait_state(api, run_id, [StateName.RUNNING]).pid for run_id in runs]
    wait_for(pidfile.exists, what="the daemon to start")
    return runs, [pid for pid in pids if pid is not None], pidfile
