"""Output an agent could not deliver before it stopped reaches the API through the next agent on its state_dir."""

from __future__ import annotations

import signal
from pathlib import Path

from localagent.agent.run.leftovers import LEFTOVER_DIR
from localagent.api.client import ApiClient
from localagent.api.models import FlowRunCreate, FlowSpec, LogLine
from tests.e2e.support import Agent, Process, wait_for
from tests.ports import free_port


def start_server(tmp_path: Path, port: int, name: str) -> Process:
    database = f"sqlite:///{tmp_path / 'api.db'}"
    server = Process(["server", "--address", f"127.0.0.1:{port}", "--database", database], tmp_path, name)

    def up() -> bool:
        assert server.popen.poll() is None, server.stderr
        try:
            with ApiClient(f"http://127.0.0.1:{port}", retries=0) as api:
                api.health()
        except Exception:
            return False
        return True

    try:
        wait_for(up, what=f"the API server ({name}) to start")
    except BaseException:
        server.kill()  # not yet in the caller's list of processes to stop: it would outlive the test
        raise
    return server


def all_logs(api: ApiClient, run_id: str) -> list[LogLine]:
    lines: list[LogLine] = []
    while page := api.read_logs(run_id, after=lines[-1].seq if lines else -1, limit=1000).lines:
        lines.extend(page)
    return lines


def test_output_kept_at_shutdown_is_delivered_by_the_next_agent(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    state_dir = tmp_path / "agent-state"
    config = {"api": {"url": url}, "agent": {"run_unlabeled": True, "state_dir": str(state_dir)}}
    go = tmp_path / "go"
    processes: list[Process] = []
    try:
        server = start_server(tmp_path, port, "server-1")
        processes.append(server)
        first = Agent(tmp_path, "first", config)
        processes.append(first)
        with ApiClient(url, retries=0) as api:
            first.wait_registered(api)
            command = f"seq 1 5; while [ ! -e {go} ]; do sleep 0.05; done; seq 6 300"
            api.register_flow(FlowSpec(name="chatty", command=command))
            run = api.create_run(FlowRunCreate(flow="chatty"))
            wait_for(lambda: len(all_logs(api, run.id)) == 5, what="the first lines to reach the API")
        server.signal(signal.SIGTERM)
        server.wait()
        go.touch()  # the rest of the output comes while the API is down
        wait_for(lambda: f"run {run.id} (chatty/{run.name}) ended Success" in first.stderr, what="the run to end")
        first.signal(signal.SIGTERM)  # it gives up delivering after its grace and keeps the spool
        assert first.wait(30) == 0, first.stderr
        assert "undelivered output is kept in" in first.stderr
        assert (state_dir / "spool" / run.id / "meta.json").is_file()

        processes.append(start_server(tmp_path, port, "server-2"))
        with ApiClient(url, retries=0) as api:
            waiting = api.create_run(FlowRunCreate(flow="chatty"))  # due at once: the new agent claims it
        go.unlink()  # ... and it waits in its loop until the end of the test
        second = Agent(tmp_path, "second", config)
        processes.append(second)
        with ApiClient(url, retries=0) as api:
            lines = wait_for(
                lambda: (found := all_logs(api, run.id)) and len(found) >= 300 and found,
                what="every line to reach the API",
            )
        assert [line.text for line in lines] == [str(i) for i in range(1, 301)]
        assert [line.seq for line in lines] == list(range(300))
        wait_for(lambda: "left by an earlier agent" in second.stderr, what="the agent to report the delivery")
        assert f"run {run.id} (chatty/{run.name}): delivered 300 output lines left by an earlier agent" in (
            second.stderr
        )
        # The first claim waited for the leftover to be delivered.
        started = f"run {waiting.id} (chatty/{waiting.name}) started"
        wait_for(lambda: started in second.stderr, what="the waiting run to start")
        assert second.stderr.index("left by an earlier agent") < second.stderr.index(started)
        go.touch()
        wait_for(lambda: f"run {waiting.id} (chatty/{waiting.name}) ended" in second.stderr, what="it to end")
        assert list((state_dir / "spool" / LEFTOVER_DIR).glob("*")) == []  # removed
        second.signal(signal.SIGTERM)
        assert second.wait(30) == 0, second.stderr
    finally:
        go.touch()  # let any run still waiting end
        for process in reversed(processes):  # the graceful stops were checked above; leave nothing behind
            process.kill()
