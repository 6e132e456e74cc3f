"""``localagent flow-run ...`` and ``flow run --watch`` through the installed binary; the test plays the agent."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from localagent.api.client import ApiClient
from localagent.api.models import AgentRegister, FlowRunCreate, FlowSpec, StateName
from tests.cli.api_cli_support import CLI_TIMEOUT, ActingAgent, cli, cli_json, start_cli


@pytest.fixture
def api(api_server: Any) -> Iterator[ApiClient]:
    with ApiClient(api_server.url) as client:
        client.register_flow(FlowSpec(name="hello", command="echo hi"))
        client.register_flow(FlowSpec(name="other", command="true"))
        yield client


@pytest.fixture
def agent(api_server: Any) -> Iterator[ActingAgent]:
    acting = ActingAgent(api_server.url)
    yield acting
    acting.close()


def test_ls_filters_by_flow_and_state(api: ApiClient) -> None:
    first = api.create_run(FlowRunCreate(flow="hello"))
    second = api.create_run(FlowRunCreate(flow="hello"))
    other = api.create_run(FlowRunCreate(flow="other"))
    api.cancel_run(second.id)
    table = cli(api.url, "flow-run", "ls")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == [
        "ID", "NAME", "FLOW", "LABELS", "STATE", "ATTEMPT", "AGENT", "SCHEDULED", "SCHEDULE", "EXIT", "WAITING"
    ]  # fmt: skip
    assert [row.split()[0] for row in rows] == [other.id, second.id, first.id]  # newest first
    assert rows[1].split()[1:5] == [second.name, "hello:1", "-", "Cancelled"]
    assert rows[1].split()[-1] == "-"
    assert rows[0].split()[-1] == "no_agent"  # nothing registered with this API yet
    assert [run["id"] for run in cli_json(api.url, "flow-run", "ls", "--flow", "hello", "--state", "scheduled")] == [
        first.id
    ]
    assert len(cli_json(api.url, "flow-run", "ls", "--limit", "1")) == 1


def test_show_prints_history_agent_pid_and_exit_code(api: ApiClient, agent: ActingAgent) -> None:
    run = api.create_run(FlowRunCreate(flow="hello", parameters={"n": 1}))
    agent.play(agent.claim_one(), ["hi"], StateName.FAILED, exit_code=3)
    shown = cli(api.url, "flow-run", "show", run.id)
    assert shown.returncode == 0, shown.stderr
    fields = dict(line.split(":", 1) for line in shown.stdout.split("\n\n")[0].splitlines())
    assert fields["state"].strip() == "Failed: process exited with code 3"
    assert fields["exit code"].strip() == "3"
    assert fields["pid"].strip() == "4242"
    assert fields["agent"].strip() == f"test-agent ({agent.agent.id})"
    assert fields["attempt"].strip() == "1"
    assert fields["parameters"].strip() == '{"n": 1}'
    history = shown.stdout.split("\n\n")[1].splitlines()
    assert history[0].split() == ["TIME", "STATE", "MESSAGE"]
    assert [line.split()[2] for line in history[1:]] == ["Scheduled", "Submitted", "Running", "Failed"]
    assert history[-1].endswith("process exited with code 3")
    assert cli_json(api.url, "flow-run", "show", run.id)["exit_code"] == 3


def test_cancel_a_scheduled_run_then_again(api: ApiClient) -> None:
    run = api.create_run(FlowRunCreate(flow="hello"))
    cancelled = cli(api.url, "flow-run", "cancel", run.id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"run {run.name} ({run.id}) is Cancelled"
    assert api.get_run(run.id).state is StateName.CANCELLED
    again = cli(api.url, "flow-run", "cancel", run.id)
    assert again.returncode == 1
    assert again.stderr.startswith("ApiConflict: ")
    assert len(again.stderr.splitlines()) == 1
    missing = cli(api.url, "flow-run", "show", "no-such-run")
    assert missing.returncode == 1
    assert missing.stderr.startswith("ApiNotFound: ")


def test_logs_prints_output_by_stream(api: ApiClient, agent: ActingAgent) -> None:
    run = api.create_run(FlowRunCreate(flow="hello"))
    agent.play(agent.claim_one(), ["line one", "an err line", "line three"], StateName.SUCCESS, exit_code=0)
    logs = cli(api.url, "flow-run", "logs", run.id)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.splitlines() == ["line one", "line three"]
    assert logs.stderr.splitlines() == ["an err line"]
    as_json = cli(api.url, "flow-run", "logs", run.id, "--json")
    assert [line.count('"seq"') for line in as_json.stdout.splitlines()] == [1, 1, 1]
    assert '"stream":"stderr"' in as_json.stdout.splitlines()[1].replace(" ", "")


def test_logs_follow_ends_when_the_run_ends(api: ApiClient, agent: ActingAgent) -> None:
    run = api.create_run(FlowRunCreate(flow="hello"))
    follower = start_cli(api.url, "flow-run", "logs", run.id, "--follow")
    try:
        agent.play(agent.claim_one(), ["first", "second"], StateName.SUCCESS, exit_code=0)
        out, err = follower.communicate(timeout=CLI_TIMEOUT)
    finally:
        follower.kill()
    assert follower.returncode == 0, err
    assert out.splitlines() == ["first", "second"]


def test_run_watch_exits_0_on_success_and_prints_the_output(api: ApiClient, agent: ActingAgent) -> None:
    watcher = start_cli(api.url, "flow", "run", "hello", "--watch")
    try:
        claimed = agent.claim_one()
        agent.play(claimed, ["hello from the run", "and more"], StateName.SUCCESS, exit_code=0)
        out, err = watcher.communicate(timeout=CLI_TIMEOUT)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, err
    assert out.splitlines() == ["hello from the run", "and more"]
    assert f"({claimed.run.id})" in err.splitlines()[0]
    assert "Success (attempt 1, pid 4242, agent test-agent, exit code 0)" in err


def test_run_watch_exits_1_on_failure(api: ApiClient, agent: ActingAgent) -> None:
    watcher = start_cli(api.url, "flow", "run", "hello", "--watch", "--json")
    try:
        agent.play(agent.claim_one(), ["some err output"], StateName.FAILED, exit_code=3)
        out, err = watcher.communicate(timeout=CLI_TIMEOUT)
    finally:
        watcher.kill()
    assert watcher.returncode == 1
    assert '"state": "Failed"' in out
    assert '"exit_code": 3' in out
    assert "some err output" in err
    assert "Failed (attempt 1, pid 4242, agent test-agent, exit code 3): process exited with code 3" in err


def test_run_watch_follows_a_retry_of_the_same_run(api: ApiClient, agent: ActingAgent) -> None:
    api.register_flow(FlowSpec(name="flaky", command="./flaky.sh", retries=1))
    watcher = start_cli(api.url, "flow", "run", "flaky", "--watch")
    try:
        first = agent.claim_one()
        agent.play(first, ["attempt one"], StateName.FAILED, exit_code=1)
        second = agent.claim_one()
        agent.play(second, ["attempt two"], StateName.SUCCESS, exit_code=0)
        out, err = watcher.communicate(timeout=CLI_TIMEOUT)
    finally:
        watcher.kill()
    assert first.run.id == second.run.id
    assert second.run.attempt == 2
    assert watcher.returncode == 0, err
    assert out.splitlines() == ["attempt one", "attempt two"]
    assert "Success (attempt 2" in err


def test_a_run_is_named_by_its_name_or_a_unique_id_prefix(api: ApiClient, agent: ActingAgent) -> None:
    run = api.create_run(FlowRunCreate(flow="hello"))
    agent.play(agent.claim_one(), ["from the run"], StateName.SUCCESS, exit_code=0)
    by_name = cli_json(api.url, "flow-run", "show", run.name)
    assert by_name["id"] == run.id
    assert cli_json(api.url, "flow-run", "show", run.id[:8])["id"] == run.id
    logs = cli(api.url, "flow-run", "logs", run.id[:8])
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.splitlines() == ["from the run"]
    followed = cli(api.url, "flow-run", "logs", run.name, "--follow")
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.splitlines() == ["from the run"]
    waiting = api.create_run(FlowRunCreate(flow="other", name="to-cancel"))
    cancelled = cli(api.url, "flow-run", "cancel", "to-cancel")
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"run to-cancel ({waiting.id}) is Cancelled"


def test_a_name_two_runs_share_is_refused_with_the_matches(api: ApiClient) -> None:
    older = api.create_run(FlowRunCreate(flow="hello", name="twice"))
    newer = api.create_run(FlowRunCreate(flow="other", name="twice"))
    shown = cli(api.url, "flow-run", "show", "twice")
    assert shown.returncode == 1
    assert shown.stderr.startswith("ApiConflict: flow run 'twice' is ambiguous: it matches 2 runs (newest first): ")
    assert shown.stderr.index(newer.id) < shown.stderr.index(older.id)
    assert len(shown.stderr.splitlines()) == 1
    assert cli(api.url, "flow-run", "cancel", "twice").returncode == 1
    assert api.get_run(older.id).state is StateName.SCHEDULED
    assert cli_json(api.url, "flow-run", "show", newer.id[:12])["flow"] == "other"


def test_ls_and_show_say_why_a_run_waits(api: ApiClient) -> None:
    api.register_agent(AgentRegister(name="gpu-box", labels=["gpu"]))
    run = api.create_run(FlowRunCreate(flow="hello", labels=["etl", "nightly"]))
    table = cli(api.url, "flow-run", "ls")
    assert table.returncode == 0, table.stderr
    row = table.stdout.splitlines()[1]
    assert "etl, nightly" in row  # labels print as the docs write them
    cells = row.split()
    assert cells[-1] == "no_matching_agent"
    shown = cli(api.url, "flow-run", "show", run.name)
    assert shown.returncode == 0, shown.stderr
    fields = dict(line.split(":", 1) for line in shown.stdout.split("\n\n")[0].splitlines())
    assert fields["waiting"].strip() == (
        "no online agent has every label of this run [etl, nightly]; the closest, gpu-box, has [gpu] "
        "(missing etl, nightly) (no_matching_agent)"
    )
    assert cli_json(api.url, "flow-run", "show", run.id)["waiting"]["reason"] == "no_matching_agent"


def test_run_watch_says_why_the_run_waits_and_again_when_the_reason_changes(api: ApiClient) -> None:
    watcher = start_cli(api.url, "flow", "run", "hello", "--watch")
    try:
        # nothing registered: after a few seconds the watch says so
        first = _read_err_line(watcher, "waiting: ")
        assert first.endswith(
            "waiting: no agent is online: none has ever registered with this API (start one: `localagent run`) "
            "(no_agent)"
        )
        assert re.match(r"\d\d:\d\d:\d\d waiting: ", first)
        # an agent with labels comes: the reason changes, and is printed once more
        api.register_agent(AgentRegister(name="labelled", labels=["h1"]))
        second = _read_err_line(watcher, "waiting: ")
        assert second.endswith("(unlabeled_run)")
        assert "labelled [h1]" in second
        # an agent that takes it: the run is claimed and ends; the watch exits 0
        agent = ActingAgent(api.url, name="taker")
        try:
            agent.play(agent.claim_one(), ["done"], StateName.SUCCESS, exit_code=0)
        finally:
            agent.close()
        out, err = watcher.communicate(timeout=CLI_TIMEOUT)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, err
    assert out.splitlines() == ["done"]
    assert "(no_agent)" not in err and "(unlabeled_run)" not in err  # a reason is not printed again unchanged


def _read_err_line(process: subprocess.Popen[str], marker: str) -> str:
    """The next stderr line of ``process`` holding ``marker`` (the pipe is read line by line)."""
    assert process.stderr is not None
    for line in process.stderr:
        if marker in line:
            return line.rstrip("\n")
    raise AssertionError(f"the process ended without a line holding {marker!r}")
