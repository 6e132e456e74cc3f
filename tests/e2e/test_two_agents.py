"""Two agents with the same labels against one ``localagent server``: every run executed exactly once."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

from localagent.api.client import ApiClient
from localagent.api.models import FlowRunCreate, FlowSpec, StateName
from tests.e2e.support import Agent, Process, wait_for
from tests.ports import free_port

RUNS = 500


def test_two_agents_share_500_runs_each_executed_once(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    database = f"sqlite:///{tmp_path / 'api.db'}"
    server = Process(["server", "--address", f"127.0.0.1:{port}", "--database", database], tmp_path, "server")
    agents: list[Agent] = []
    starts = tmp_path / "starts.txt"
    try:
        api = ApiClient(url, retries=0)

        def server_up() -> bool:
            assert server.popen.poll() is None, server.stderr
            try:
                api.health()
            except Exception:
                return False
            return True

        wait_for(server_up, what="the API server to start")
        config = {
            "api": {"url": url},
            "agent": {"labels": ["pool"], "poll_interval": "2s"},
            "logs": {"level": "WARNING"},
        }
        agents = [Agent(tmp_path, f"agent-{i}", config) for i in (1, 2)]
        for agent in agents:
            agent.wait_registered(api)
        api.register_flow(
            FlowSpec(name="count", command=f'echo "$LOCALAGENT_FLOW_RUN_ID" >> {starts}', labels=["pool"])
        )
        run_ids = {api.create_run(FlowRunCreate(flow="count")).id for _ in range(RUNS)}

        def all_final() -> bool:
            finished = [run for run in api.list_runs(flow="count", limit=RUNS + 10) if run.state.is_final]
            return len(finished) == RUNS

        wait_for(all_final, timeout=100, what=f"{RUNS} runs to finish")
        runs = api.list_runs(flow="count", limit=RUNS + 10)
        assert {run.id for run in runs} == run_ids
        assert Counter(run.state for run in runs) == {StateName.SUCCESS: RUNS}
        executed = Counter(starts.read_text().split())
        assert set(executed) == run_ids
        assert [run_id for run_id, count in executed.items() if count != 1] == []
        by_agent = Counter(run.agent_name for run in runs)
        assert set(by_agent) <= {"agent-1", "agent-2"}
        for agent in agents:
            agent.signal(signal.SIGTERM)
        for agent in agents:
            assert agent.wait() == 0
        api.close()
    finally:
        for agent in agents:
            agent.kill()
        server.signal(signal.SIGTERM)
        server.wait()
