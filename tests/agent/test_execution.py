"""RunExecution against the real API server: states, exit codes, cancel, timeout, output, outages."""

from __future__ import annotations

import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from localagent.agent.coordination.session import RunOrigin
from localagent.agent.coordination.state_batch import StateBatcher
from localagent.agent.metrics import AgentMetrics
from localagent.agent.run.console import ConsolePrinter
from localagent.agent.run.execution import RunExecution
from localagent.agent.run.reaper import ChildReaper
from localagent.agent.run.reporter import PendingDeliveries
from localagent.agent.run.spool import LineReader, RunSpool, SpoolMeta
from localagent.api.client import ApiClient
from localagent.api.models import (
    ClaimedRun,
    FlowRun,
    FlowSpec,
    StateName,
)
from localagent.config.model import AgentConfig
from localagent.server.runner import ServerThread
from tests.conftest import MakeApiServer
from tests.support.processes import proc_state, wait_gone
from tests.support.runs import all_logs, claim_one, wait_state
from tests.support.wait import wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process groups and /proc")

RunFactory = Callable[..., tuple[RunExecution, ClaimedRun]]


@pytest.fixture
def reaper() -> Iterator[ChildReaper]:
    reaper = ChildReaper()
    reaper.start()
    yield reaper
    reaper.stop()


@pytest.fixture
def admin(api_server: ServerThread) -> Iterator[ApiClient]:
    with ApiClient(api_server.url) as client:
        yield client


def agent_config(tmp_path: Path, **sections: Any) -> AgentConfig:
    data: dict[str, Any] = {"agent": {"state_dir": str(tmp_path / "state")}, "runs": {"stop_grace": 5}}
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return AgentConfig.model_validate(data)


@pytest.fixture
def start_run(admin: ApiClient, api_server: ServerThread, reaper: ChildReaper, tmp_path: Path) -> Iterator[RunFactory]:
    executions: list[RunExecution] = []
    clients: list[ApiClient] = []

    def start(
        command: list[str] | str, config: AgentConfig | None = None, **spec: Any
    ) -> tuple[RunExecution, ClaimedRun]:
        claimed = claim_one(admin, FlowSpec(name=spec.pop("name", "job"), command=command, **spec))
        client = ApiClient(api_server.url, key=claimed.token, timeout=2.0, retries=1, backoff=0.05)
        clients.append(client)
        execution = RunExecution(
            claimed, config or agent_config(tmp_path), client, reaper=reaper, console=ConsolePrinter(enabled=False)
        )
        executions.append(execution)
        execution.start()
        return execution, claimed

    yield start
    for execution in executions:
        execution.shutdown(immediate=True)
        execution.done.wait(30)
    for client in clients:
        client.close()


def finish(execution: RunExecution, admin: ApiClient) -> FlowRun:
    assert execution.done.wait(60)
    return admin.get_run(execution.run_id)


def wait_running(admin: ApiClient, run_id: str) -> FlowRun:
    return wait_state(admin, run_id, {StateName.RUNNING})


def test_success_reports_running_then_success_with_output(start_run: RunFactory, admin: ApiClient) -> None:
    execution, _ = start_run(["sh", "-c", "echo hello; echo oops >&2"])
    run = finish(execution, admin)
    assert run.state == StateName.SUCCESS
    assert run.exit_code == 0
    assert run.pid is not None
    assert [record.state for record in run.history][-3:] == [StateName.SUBMITTED, StateName.RUNNING, StateName.SUCCESS]
    assert sorted((line.stream, line.text) for line in all_logs(admin, run.id)) == [
        ("stderr", "oops"),
        ("stdout", "hello"),
    ]
    assert not (Path(execution.config.agent.state_dir) / "spool" / run.id).exists()


def test_exit_code_3_is_failed_with_the_code(start_run: RunFactory, admin: ApiClient) -> None:
    execution, _ = start_run("exit 3")
    run = finish(execution, admin)
    assert (run.state, run.exit_code, run.state_message) == (StateName.FAILED, 3, "process exited with code 3")


def test_killed_by_a_signal_is_failed_naming_it(start_run: RunFactory, admin: ApiClient) -> None:
    execution, _ = start_run("kill -9 $$")
    run = finish(execution, admin)
    assert run.state == StateName.FAILED
    assert run.state_message == "process killed by signal SIGKILL (9)"


def test_cancel_of_a_running_sleep_ends_cancelled(start_run: RunFactory, admin: ApiClient) -> None:
    execution, _ = start_run(["sleep", "60"])
    wait_running(admin, execution.run_id)
    execution.cancel()
    run = finish(execution, admin)
    assert run.state == StateName.CANCELLED
    assert run.state_message == "cancelled on request"
    assert execution.pid is not None and proc_state(execution.pid) is None


def test_cancel_escalates_to_sigkill_after_the_grace(start_run: RunFactory, admin: ApiClient, tmp_path: Path) -> None:
    config = agent_config(tmp_path, runs={"stop_grace": 0.3})
    execution, _ = start_run("trap '' TERM; echo ready; while :; do sleep 0.1; done", config)
    wait_running(admin, execution.run_id)
    # "ready" is printed after the trap is installed: from then on SIGTERM is ignored and only SIGKILL ends it.
    wait_for(lambda: "ready" in [line.text for line in all_logs(admin, execution.run_id)], what="the trap")
    execution.cancel("stop it")
    run = finish(execution, admin)
    assert (run.state, run.state_message) == (StateName.CANCELLED, "stop it")
    assert run.exit_code == -signal.SIGKILL  # it was killed, not ended by the SIGTERM it ignores


def test_cancel_before_start_never_starts_the_process(
    admin: ApiClient, api_server: ServerThread, reaper: ChildReaper, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    claimed = claim_one(admin, FlowSpec(name="never", command=["touch", str(marker)]))
    with ApiClient(api_server.url, key=claimed.token) as client:
        execution = RunExecution(claimed, agent_config(tmp_path), client, reaper=reaper, console=ConsolePrinter())
        execution.cancel()
        execution.start()
        run = finish(execution, admin)
    assert run.state == StateName.CANCELLED
    assert not marker.exists()


def test_timeout_stops_the_run_and_fails_it(start_run: RunFactory, admin: ApiClient) -> None:
    execution, _ = start_run(["sleep", "60"], timeout=0.5)
    run = finish(execution, admin)
    assert (run.state, run.state_message) == (StateName.FAILED, "timed out after 0.5s")


def test_missing_working_dir_fails_naming_it(start_run: RunFactory, admin: ApiClient, tmp_path: Path) -> None:
    missing = tmp_path / "srv" / "x"
    execution, _ = start_run(["true"], run_config={"type": "local", "working_dir": str(missing)})
    run = finish(execution, admin)
    assert run.state == StateName.FAILED
    assert run.state_message.startswith(f"working_dir {missing} does not exist on host ")


def test_unknown_command_fails_naming_it(start_run: RunFactory, admin: ApiClient) -> None:
    execution, _ = start_run(["no-such-command-xyz"])
    run = finish(execution, admin)
    assert run.state == StateName.FAILED
    assert run.state_message.startswith("command 'no-such-command-xyz' not found on host ")


def test_100k_lines_arrive_in_order(start_run: RunFactory, admin: ApiClient) -> None:
    execution, claimed = start_run(["python3", "-c", "import sys\nfor i in range(100000): print(f'line {i}')"])
    run = finish(execution, admin)
    assert run.state == StateName.SUCCESS
    lines = all_logs(admin, run.id)
    assert [line.text for line in lines] == [f"line {i}" for i in range(100_000)]
    assert [line.seq for line in lines] == list(range(claimed.next_log_seq, claimed.next_log_seq + 100_000))


def test_invalid_utf8_arrives_replaced(start_run: RunFactory, admin: ApiClient) -> None:
    execution, _ = start_run(["python3", "-c", r"import sys; sys.stdout.buffer.write(b'ok \xff\xfe end\n')"])
    run = finish(execution, admin)
    assert [line.text for line in all_logs(admin, run.id)] == ["ok \ufffd\ufffd end"]


def test_background_grandchild_is_killed_and_reaped(start_run: RunFactory, admin: ApiClient) -> None:
    execution, _ = start_run("sleep 300 & echo $!")
    run = finish(execution, admin)
    assert run.state == StateName.SUCCESS
    grandchild = int(all_logs(admin, run.id)[0].text)
    assert wait_gone(grandchild) is None  # neither running nor a zombie


def test_environment_reaches_the_process(start_run: RunFactory, admin: ApiClient, tmp_path: Path) -> None:
    config = agent_config(tmp_path, runs={"env": {"GREETING": "agent", "OTHER": "agent"}})
    execution, claimed = start_run(
        'echo "$GREETING $OTHER $LOCALAGENT_FLOW_RUN_ID ${LOCALAGENT_API_KEY:-none}"; echo "$LOCALAGENT_API_TOKEN"',
        config,
        run_config={"env": {"GREETING": "flow"}},
    )
    run = finish(execution, admin)
    texts = [line.text for line in all_logs(admin, run.id)]
    assert texts == [f"flow agent {run.id} none", claimed.token]


def test_api_down_mid_run_then_back_delivers_every_line_and_the_final_state(
    admin: ApiClient, api_server: ServerThread, reaper: ChildReaper, tmp_path: Path
) -> None:
    script = "import time\nfor i in range(60):\n    print(f'tick {i}', flush=True)\n    time.sleep(0.05)\n"
    claimed = claim_one(admin, FlowSpec(name="outage", command=["python3", "-c", script]))
    port, database = api_server.port, api_server.settings.database_url
    url = api_server.url
    with ApiClient(url, key=claimed.token, timeout=1.0, retries=0, backoff=0.05) as client:
        execution = RunExecution(claimed, agent_config(tmp_path), client, reaper=reaper, console=ConsolePrinter())
        execution.start()
        wait_running(admin, execution.run_id)
        api_server.stop()
        assert execution.pid is not None
        while proc_state(execution.pid) is not None:  # the run ends while the API is away
            time.sleep(0.05)
        time.sleep(1.0)
        assert not execution.done.is_set()  # the final state has not been delivered yet
        assert (tmp_path / "state" / "spool" / execution.run_id).is_dir()
        restarted = ServerThread(address=f"127.0.0.1:{port}", database_url=database)
        restarted.start()
        try:
            assert execution.done.wait(60)
            with ApiClient(restarted.url) as admin2:
                run = admin2.get_run(execution.run_id)
                texts = [line.text for line in all_logs(admin2, run.id)]
        finally:
            restarted.stop()
    assert run.state == StateName.SUCCESS
    assert texts == [f"tick {i}" for i in range(60)]


def test_console_prints_prefixed_lines_when_enabled(
    admin: ApiClient, api_server: ServerThread, reaper: ChildReaper, tmp_path: Path
) -> None:
    import io

    stream = io.StringIO()
    claimed = claim_one(admin, FlowSpec(name="shown", command=["sh", "-c", "echo one; echo two"]))
    with ApiClient(api_server.url, key=claimed.token) as client:
        execution = RunExecution(
            claimed, agent_config(tmp_path), client, reaper=reaper, console=ConsolePrinter(enabled=True, stream=stream)
        )
        execution.start()
        finish(execution, admin)
    prefix = f"[shown/{claimed.run.name}] "
    assert stream.getvalue().splitlines() == [f"{prefix}one", f"{prefix}two"]


def test_metrics_count_the_run_and_its_shipped_lines(
    admin: ApiClient, api_server: ServerThread, reaper: ChildReaper, tmp_path: Path
) -> None:
    metrics = AgentMetrics()
    claimed = claim_one(admin, FlowSpec(name="counted", command=["sh", "-c", "echo a; echo b; exit 2"]))
    with ApiClient(api_server.url, key=claimed.token) as client:
        execution = RunExecution(
            claimed, agent_config(tmp_path), client, reaper=reaper, console=ConsolePrinter(), metrics=metrics
        )
        execution.start()
        finish(execution, admin)
    text = metrics.render().decode()
    assert re.search(r'^localagent_log_lines_total\{outcome="shipped"\} 2\.0$', text, re.M)
    assert re.search(r'^localagent_runs_finished_total\{state="Failed"\} 1\.0$', text, re.M)


def test_shutdown_with_the_api_gone_still_stops_the_run_and_finishes(
    admin: ApiClient, api_server: ServerThread, reaper: ChildReaper, tmp_path: Path
) -> None:
    claimed = claim_one(admin, FlowSpec(name="orphaned", command=["sleep", "60"]))
    with ApiClient(api_server.url, key=claimed.token, timeout=0.5, retries=0) as client:
        execution = RunExecution(
            claimed, agent_config(tmp_path), client, reaper=reaper, console=ConsolePrinter(), delivery_grace=0.5
        )
        execution.start()
        wait_running(admin, execution.run_id)
        api_server.stop()
        execution.shutdown(immediate=True)
        assert execution.done.wait(30)
    assert execution.final_state == StateName.CANCELLED
    assert execution.pid is not None and proc_state(execution.pid) is None


def test_the_slot_is_freed_once_the_final_state_is_queued_and_delivery_goes_on(
    admin: ApiClient, api_server: ServerThread, reaper: ChildReaper, tmp_path: Path
) -> None:
    claimed = claim_one(admin, FlowSpec(name="late", command=["sh", "-c", "seq 1 20000; exit 4"]))
    seen: list[tuple[StateName | None, bool]] = []
    config = agent_config(tmp_path)
    pending = PendingDeliveries()
    with ApiClient(api_server.url, key=claimed.token) as client:
        execution = RunExecution(
            claimed,
            config,
            client,
            reaper=reaper,
            console=ConsolePrinter(),
            on_finished=lambda ex: seen.append((ex.final_state, ex.done.is_set())),
            pending=pending,
        )
        execution.start()
        assert pending.wait(60)  # a shutdown waits for what was queued
        assert execution.done.is_set()
    assert seen and seen[0][0] == StateName.FAILED
    run = admin.get_run(execution.run_id)
    assert (run.state, run.exit_code) == (StateName.FAILED, 4)
    assert [line.text for line in all_logs(admin, run.id)] == [str(i) for i in range(1, 20001)]
    assert not (config.agent.state_dir / "spool" / run.id).exists()


def test_a_run_without_output_never_makes_a_spool(start_run: RunFactory, admin: ApiClient, tmp_path: Path) -> None:
    execution, claimed = start_run(["true"])
    assert finish(execution, admin).state == StateName.SUCCESS
    assert not (tmp_path / "state" / "spool" / claimed.run.id).exists()


def test_undelivered_output_is_kept_with_a_meta_naming_the_run_and_its_api(
    admin: ApiClient, api_server: ServerThread, reaper: ChildReaper, tmp_path: Path
) -> None:
    command = "trap 'echo bye; exit 0' TERM; echo one; sleep 60 & wait"  # "bye" comes once the API is gone
    claimed = claim_one(admin, FlowSpec(name="stranded", command=command))
    config = agent_config(tmp_path)
    directory = config.agent.state_dir / "spool" / claimed.run.id
    origin = RunOrigin(api="embedded", url=api_server.url)
    with ApiClient(api_server.url, key=claimed.token, timeout=0.5, retries=0) as client:
        execution = RunExecution(
            claimed, config, client, reaper=reaper, console=ConsolePrinter(), delivery_grace=0.5, origin=origin
        )
        execution.start()
        deadline = time.monotonic() + 30
        while not all_logs(admin, claimed.run.id) and time.monotonic() < deadline:
            time.sleep(0.05)
        api_server.stop()
        execution.shutdown()
        assert execution.done.wait(30)
    assert SpoolMeta.read(directory) == SpoolMeta(
        claimed.run.id, "embedded", claimed.next_log_seq, f"stranded/{claimed.run.name}"
    )
    kept = RunSpool.reopen(directory)
    assert [line.text for line in LineReader(kept).read_lines(10)] == ["one", "bye"]
    kept.release()


def _threads_of(name: str) -> set[str]:
    """The kinds of thread (``run``, ``ship``, ``deliver``, ``running``) now alive for the run named ``name``."""
    return {thread.name.rpartition(f"-{name}")[0] for thread in threading.enumerate() if thread.name.endswith(name)}


class BatchedRuns:
    """Runs whose states go through a StateBatcher on a client with the given agent key, as the agent's do,
    on a server whose operator key is ``"operator"``."""

    def __init__(self, server: ServerThread, reaper: ChildReaper, tmp_path: Path) -> None:
        self.url = server.url
        self._reaper = reaper
        self._tmp_path = tmp_path
        self._made: list[tuple[RunExecution, StateBatcher, list[ApiClient]]] = []

    def start(self, command: list[str] | str, *, agent_key: str) -> RunExecution:
        with ApiClient(self.url, key="operator") as admin:
            claimed = claim_one(admin, FlowSpec(name="batched", command=command))
        agent_client = ApiClient(self.url, key=agent_key)
        run_client = ApiClient(self.url, key=claimed.token, timeout=2.0)
        batcher = StateBatcher(agent_client)
        config = agent_config(self._tmp_path)
        execution = RunExecution(
            claimed, config, run_client, reaper=self._reaper, console=ConsolePrinter(), state_batcher=batcher
        )
        self._made.append((execution, batcher, [agent_client, run_client]))
        execution.start()
        return execution

    def close(self) -> None:
        for execution, batcher, clients in self._made:
            execution.shutdown(immediate=True)
            execution.done.wait(30)
            batcher.close()
            for client in clients:
                client.close()


@pytest.fixture
def batched(make_api_server: MakeApiServer, reaper: ChildReaper, tmp_path: Path) -> Iterator[BatchedRuns]:
    runs = BatchedRuns(make_api_server(api_keys=("operator",)), reaper, tmp_path)
    yield runs
    runs.close()


def test_a_quiet_run_reports_running_through_the_batch_from_one_thread(batched: BatchedRuns) -> None:
    execution = batched.start(["sleep", "60"], agent_key="operator")
    with ApiClient(batched.url, key="operator") as admin:
        wait_running(admin, execution.run_id)
        assert _threads_of(execution.claimed.run.name) == {"run"}  # no delivery thread waits on the batch
        execution.cancel()
        assert finish(execution, admin).state == StateName.CANCELLED


def test_running_is_sent_alone_at_once_when_the_batch_is_refused(batched: BatchedRuns) -> None:
    # The agent's key was revoked: the batch endpoint answers 401, so Running goes alone, with the run's
    # token, while the process still runs (not when it ends).
    execution = batched.start(["sleep", "60"], agent_key="revoked")
    with ApiClient(batched.url, key="operator") as admin:
        wait_running(admin, execution.run_id)
        assert not execution.done.is_set()
        execution.cancel()
        run = finish(execution, admin)
    states = [record.state for record in run.history]
    assert states[-3:] == [StateName.SUBMITTED, StateName.RUNNING, StateName.CANCELLED]


def test_output_ships_while_the_run_goes_on(batched: BatchedRuns) -> None:
    execution = batched.start("echo first; sleep 60", agent_key="operator")
    with ApiClient(batched.url, key="operator") as admin:
        deadline = time.monotonic() + 30
        while not admin.read_logs(execution.run_id).lines and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [line.text for line in admin.read_logs(execution.run_id).lines] == ["first"]
        assert admin.get_run(execution.run_id).state == StateName.RUNNING
        assert "ship" in _threads_of(execution.claimed.run.name)
        execution.cancel()
        assert finish(execution, admin).state == StateName.CANCELLED
