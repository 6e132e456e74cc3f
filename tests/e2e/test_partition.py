"""A partition between a real agent (``localagent run``) and a real server: a TCP proxy in between is cut.

Each execution of the flow appends ``start <agent> <pid>`` to a file (and ``stopped <agent> <pid>`` when it
gets SIGTERM); the flow runs until the test creates a ``go`` file. What the file holds is what ran.
"""

from __future__ import annotations

from pathlib import Path

from localagent.api.client import ApiClient
from localagent.api.models import FlowRun, FlowRunCreate, FlowSpec, StateName
from tests.conftest import MakeApiServer
from tests.e2e.support import Agent, wait_for, wait_state
from tests.support.processes import alive
from tests.support.tcp_proxy import TcpProxy

S = StateName
SCRIPT = (
    'trap \'echo "stopped $WHO $$" >> "$OUT"; exit 143\' TERM; echo "start $WHO $$" >> "$OUT"; '
    'while [ ! -e "$GO" ]; do sleep 0.1; done; echo "end $WHO $$" >> "$OUT"'
)


def _flow(api: ApiClient, tmp_path: Path, **spec: object) -> tuple[Path, Path]:
    out, go = tmp_path / "executions.txt", tmp_path / "go"
    api.register_flow(
        FlowSpec.model_validate(
            {
                "name": "work",
                "command": ["sh", "-c", SCRIPT],
                "labels": ["work"],
                "run_config": {"env": {"OUT": str(out), "GO": str(go)}},
                **spec,
            }
        )
    )
    return out, go


def _lines(out: Path) -> list[str]:
    return out.read_text().splitlines() if out.exists() else []


def _agent(tmp_path: Path, name: str, url: str, **runs: object) -> Agent:
    return Agent(
        tmp_path,
        name,
        {
            "agent": {"labels": ["work"]},
            "api": {"url": url, "timeout": "2s"},
            "runs": {"env": {"WHO": name}, "stop_grace": "1s", **runs},
        },
    )


def _messages(run: FlowRun) -> list[tuple[str, str]]:
    return [(h.state.value, h.message) for h in run.history]


def test_keep_agent_runs_on_through_a_partition_and_reconnects(make_api_server: MakeApiServer, tmp_path: Path) -> None:
    server = make_api_server(agent_timeout=2.0, sweep_interval=0.2)
    api = ApiClient(server.url, retries=0)
    out, go = _flow(api, tmp_path, retries=3)
    with TcpProxy(server.url) as proxy:
        agent = _agent(tmp_path, "keeper", proxy.url, api_lost_after="1s")  # on_api_lost = "keep": the default
        try:
            agent.wait_registered(api)
            run = api.create_run(FlowRunCreate(flow="work"))
            wait_state(api, run.id, [S.RUNNING])
            wait_for(lambda: _lines(out), what="the run to start")
            pid = int(_lines(out)[0].split()[2])

            proxy.cut()
            unknown = wait_state(api, run.id, [S.UNKNOWN])
            assert unknown.state_message.endswith("silent for 2s; the run may still be running")
            wait_for(lambda: "1 run(s) keep running" in agent.stderr, what="the agent to log the lost API")
            assert alive(pid)
            assert api.get_run(run.id).state is S.UNKNOWN and api.get_run(run.id).attempt == 1

            proxy.restore()
            back = wait_state(api, run.id, [S.RUNNING])
            assert _messages(back)[-1][1].endswith("/keeper reconnected")
            wait_for(lambda: "API contact is back" in agent.stderr, what="the agent to log the API's return")
            go.touch()
            done = wait_state(api, run.id, [S.SUCCESS, S.FAILED, S.CRASHED])
            assert done.state is S.SUCCESS and done.attempt == 1
            assert [line.split()[0] for line in _lines(out)] == ["start", "end"]  # one execution, never two
        finally:
            agent.kill()


def test_stop_agent_stops_its_run_and_reports_it_crashed_when_the_api_returns(
    make_api_server: MakeApiServer, tmp_path: Path
) -> None:
    server = make_api_server(agent_timeout=2.0, sweep_interval=0.2)
    api = ApiClient(server.url, retries=0)
    out, _go = _flow(api, tmp_path, retries=0)
    with TcpProxy(server.url) as proxy:
        agent = _agent(tmp_path, "stopper", proxy.url, on_api_lost="stop", api_lost_after="1s")
        try:
            agent.wait_registered(api)
            run = api.create_run(FlowRunCreate(flow="work"))
            wait_state(api, run.id, [S.RUNNING])
            wait_for(lambda: _lines(out), what="the run to start")

            proxy.cut()
            stopped = wait_for(lambda: [x for x in _lines(out) if x.startswith("stopped")], what="the stop")
            assert stopped == [f"stopped stopper {_lines(out)[0].split()[2]}"]
            assert api.get_run(run.id).state in (S.RUNNING, S.UNKNOWN)  # the API has not heard yet

            proxy.restore()
            crashed = wait_state(api, run.id, [S.CRASHED, S.SUCCESS, S.FAILED, S.CANCELLED])
            assert crashed.state is S.CRASHED
            assert crashed.state_message == 'stopped: API unreachable for 1s (runs.on_api_lost = "stop")'
            wait_for(lambda: "API contact is back" in agent.stderr, what="the agent to log the API's return")
        finally:
            agent.kill()


def test_retry_lost_replaces_a_stopped_run_only_after_the_original_stopped(
    make_api_server: MakeApiServer, tmp_path: Path
) -> None:
    server = make_api_server(agent_timeout=2.0, sweep_interval=0.2)
    api = ApiClient(server.url, retries=0)
    out, go = _flow(api, tmp_path, retries=1, retry_lost=True)
    with TcpProxy(server.url) as proxy:
        first = _agent(tmp_path, "first", proxy.url, on_api_lost="stop", api_lost_after="1s")
        second: Agent | None = None
        try:
            first.wait_registered(api)
            run = api.create_run(FlowRunCreate(flow="work"))
            wait_state(api, run.id, [S.RUNNING])
            wait_for(lambda: _lines(out), what="the run to start")

            proxy.cut()
            # Another agent that reaches the API is ready at once; it gets the run only once it is replaced.
            second = _agent(tmp_path, "second", server.url)
            second.wait_registered(api)
            replaced = wait_for(
                lambda: (r := api.get_run(run.id)).attempt == 2 and r.state is S.RUNNING and r,
                timeout=60,
                what="the run to run again on the second agent",
            )
            assert replaced.agent_name == "second"
            wait_for(lambda: len(_lines(out)) >= 3, what="the second execution to start")
            kinds = [(line.split()[0], line.split()[1]) for line in _lines(out)]
            # The first execution was stopped before the second started: never two at once.
            assert kinds == [("start", "first"), ("stopped", "first"), ("start", "second")]
            history = _messages(replaced)
            assert ("Crashed", "agent lost; stopped by its on_api_lost policy") in history

            proxy.restore()
            late = (
                "late report of attempt 1 (replaced by attempt 2, now Running): "
                'stopped: API unreachable for 1s (runs.on_api_lost = "stop")'
            )
            wait_for(lambda: ("Crashed", late) in _messages(api.get_run(run.id)), what="the late report")
            go.touch()
            done = wait_state(api, run.id, [S.SUCCESS, S.FAILED, S.CRASHED])
            assert (done.state, done.attempt) == (S.SUCCESS, 2)
            assert [line.split()[0] for line in _lines(out)].count("start") == 2
        finally:
            first.kill()
            if second is not None:
                second.kill()
