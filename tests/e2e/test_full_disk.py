"""A full state_dir never loses output silently: a marker, the final state message and a metric say how much."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from localagent.api.client import ApiClient
from localagent.api.models import FlowRunCreate, FlowSpec, LogLine, StateName
from tests.e2e.support import Agent, Process, wait_for, wait_state
from tests.e2e.test_restart_delivery import start_server
from tests.ports import free_ports

LINES = 1_000_000
# 1,000,000 numbered lines of 200 bytes (200 MB): ten times what a 20 MB state_dir holds.
CHATTY = f"""
import os, sys, time
while not os.path.exists(sys.argv[1]):
    time.sleep(0.02)
out = sys.stdout
for i in range({LINES}):
    out.write(("line %07d " + "x" * 186 + "\\n") % i)
"""


@pytest.fixture
def small_state_dir(tmp_path: Path) -> Iterator[Path]:
    """A 20 MB tmpfs (needs root: skipped where mount is refused)."""
    directory = tmp_path / "state"
    directory.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(directory)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a 20 MB tmpfs here: {mounted.stderr.decode().strip()}")
    yield directory
    subprocess.run(["umount", "-l", str(directory)], check=False)


def _all_logs(api: ApiClient, run_id: str) -> list[LogLine]:
    lines: list[LogLine] = []
    while page := api.read_logs(run_id, after=lines[-1].seq if lines else -1, limit=10_000).lines:
        lines.extend(page)
    return lines


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


@pytest.mark.timeout(600)
def test_output_that_cannot_be_written_is_counted_marked_and_reported(tmp_path: Path, small_state_dir: Path) -> None:
    api_port, health_port = free_ports(2)
    url = f"http://127.0.0.1:{api_port}"
    go = tmp_path / "go"
    processes: list[Process] = []
    try:
        server = start_server(tmp_path, api_port, "server-1")
        processes.append(server)
        agent = Agent(
            tmp_path,
            "full",
            {
                "api": {"url": url},
                "agent": {"run_unlabeled": True, "state_dir": str(small_state_dir)},
                "health": {"address": f"127.0.0.1:{health_port}"},
                "logs": {"max_run_output": 0},  # no cap: every line is either kept or lost
            },
        )
        processes.append(agent)
        with ApiClient(url, retries=0) as api:
            agent.wait_registered(api)
            api.register_flow(FlowSpec(name="chatty", command=[sys.executable, "-c", CHATTY, str(go)]))
            run = api.create_run(FlowRunCreate(flow="chatty"))
            wait_state(api, run.id, [StateName.RUNNING])
        server.signal(signal.SIGTERM)  # the API goes down: every line goes to the 20 MB spool
        server.wait()
        go.touch()
        ended = f"run {run.id} (chatty/{run.name}) ended Success"
        wait_for(lambda: ended in agent.stderr, timeout=120, what="the run to end")
        assert "No space left on device" in agent.stderr
        metrics = requests.get(f"http://127.0.0.1:{health_port}/metrics", timeout=10).text
        lost_lines = _metric(metrics, 'localagent_log_lines_total{outcome="lost"}')
        assert lost_lines > 0
        assert _metric(metrics, "localagent_log_bytes_lost_total") > 0
        assert agent.popen.poll() is None, "the agent keeps working"

        server = start_server(tmp_path, api_port, "server-2")  # the API is back: output and state arrive
        processes.append(server)
        with ApiClient(url, retries=0) as api:
            final = wait_state(api, run.id, [StateName.SUCCESS], timeout=300)
            spooled = small_state_dir / "spool" / run.id
            wait_for(lambda: not spooled.exists(), timeout=300, what="the spool to be delivered and removed")
            lines = _all_logs(api, run.id)
        message = final.state_message
        assert message.startswith("process exited with code 0; output lost: "), message
        assert "could not be written to the agent's state_dir (No space left on device)" in message
        marker = lines[-1]
        assert (marker.stream, marker.text.startswith("[localagent] output lost here: ")) == ("system", True), marker
        # One marker where output was lost (a smaller write may fit again in between): together, all of it.
        markers = [re.search(r"lost here: ([\d,]+) lines", line.text) for line in lines if line.stream == "system"]
        lost_in_marker = sum(int(m.group(1).replace(",", "")) for m in markers if m is not None)
        kept = [line for line in lines if line.stream == "stdout"]
        assert lost_in_marker == int(lost_lines)
        # Every line is either stored or counted lost (a line cut by the loss may count on both sides).
        assert abs(len(kept) + lost_in_marker - LINES) <= 2, (len(kept), lost_in_marker)
        assert kept[0].text.startswith("line 0000000 ")
        agent.signal(signal.SIGTERM)
        assert agent.wait(60) == 0
    finally:
        for process in processes:
            process.kill()
