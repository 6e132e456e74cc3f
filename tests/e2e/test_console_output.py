"""Run output on the agent's console is escaped (text) or one JSON object a line on the log stream (json)."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from localagent.api.client import ApiClient
from localagent.api.models import FlowRunCreate, FlowSpec, StateName
from localagent.server.runner import ServerThread
from tests.e2e.support import Agent, wait_state

# A terminal title, a clear screen, a carriage return hiding a forged agent log line, a C1 control (NEL,
# which some terminals take as a line break), a bidi override, and one plain line.
HOSTILE = [
    "\x1b]0;pwned\x07title set",
    "\x1b[2J\x1b[Hscreen cleared",
    "ok\r2026-12-01 00:00:00,000 ERROR   localagent.agent: forged",
    "next\u0085line",
    "abc\u202efed",
    "plain text, tabs\tkept",
]
SCRIPT = "import sys\nfor line in " + repr(HOSTILE) + ":\n    sys.stdout.write(line + '\\n')\n"


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        agent.kill()


def _run_hostile(tmp_path: Path, url: str, agents: list[Agent], log_format: str) -> tuple[Agent, str]:
    logs = {"show_flow_logs": True, "format": log_format}
    agent = Agent(
        tmp_path, f"console-{log_format}", {"api": {"url": url}, "agent": {"run_unlabeled": True}, "logs": logs}
    )
    agents.append(agent)
    with ApiClient(url) as api:
        agent.wait_registered(api)
        api.register_flow(FlowSpec(name="hostile", command=[sys.executable, "-c", SCRIPT]))
        run = api.create_run(FlowRunCreate(flow="hostile"))
        assert wait_state(api, run.id, [StateName.SUCCESS, StateName.FAILED]).state == StateName.SUCCESS
        assert [line.text for line in api.read_logs(run.id).lines] == HOSTILE, "the API keeps the output as it was"
    agent.signal(signal.SIGTERM)
    assert agent.wait() == 0
    return agent, run.name


def _raw_controls(data: bytes) -> list[bytes]:
    text = data.decode()
    return [ch.encode() for ch in text if (ord(ch) < 0x20 and ch not in "\t\n") or 0x7F <= ord(ch) <= 0x9F]


def test_text_console_shows_control_characters_escaped(
    tmp_path: Path, api_server: ServerThread, agents: list[Agent]
) -> None:
    agent, name = _run_hostile(tmp_path, api_server.url, agents, "text")
    stdout = agent.stdout_path.read_bytes()
    assert _raw_controls(stdout) == [], "no raw control character reaches the terminal"
    assert "\u202e" not in stdout.decode()
    prefix = f"[hostile/{name}] "
    assert stdout.decode().splitlines() == [
        prefix + "\\x1b]0;pwned\\x07title set",
        prefix + "\\x1b[2J\\x1b[Hscreen cleared",
        prefix + "ok\\r2026-12-01 00:00:00,000 ERROR   localagent.agent: forged",
        prefix + "next\\x85line",
        prefix + "abc\\u202efed",
        prefix + "plain text, tabs\tkept",
    ]


def test_json_format_prints_run_output_as_json_objects_on_the_log_stream(
    tmp_path: Path, api_server: ServerThread, agents: list[Agent]
) -> None:
    agent, name = _run_hostile(tmp_path, api_server.url, agents, "json")
    assert agent.stdout_path.read_bytes() == b"", "one stream: everything goes to stderr"
    stderr = agent.stderr_path.read_bytes()
    assert _raw_controls(stderr) == []
    entries = [json.loads(line) for line in stderr.decode().splitlines()]  # every line is one JSON object
    output = [entry for entry in entries if entry["logger"] == "localagent.run.output"]
    assert [entry["text"] for entry in output] == HOSTILE
    assert {(entry["flow"], entry["run"], entry["stream"], entry["level"]) for entry in output} == {
        ("hostile", name, "stdout", "INFO")
    }
    assert all(len(entry["run_id"]) == 32 and entry["time"].endswith("+00:00") for entry in output)
    assert any(entry["logger"] == "localagent.agent" for entry in entries), "the agent's own lines are there too"
