"""``localagent server`` as a user runs it: keys enforced, a busy port is one line and exit 3, SIGTERM stops it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.ports import free_port


def _wait_healthy(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            if requests.get(url + "/api/health", timeout=1).ok:
                return
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or still opening its database
            time.sleep(0.05)
    raise AssertionError("the server never answered")


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    process = subprocess.Popen(
        [sys.executable, "-m", "localagent.cli.main", "server", "--address", f"127.0.0.1:{port}",
         "--database", f"sqlite:///{tmp_path / 'api.db'}", "--api-key", "K", "--agent-timeout", "30s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_key_required_and_sigterm_stops_cleanly(server_process: tuple[str, subprocess.Popen[str]]) -> None:
    url, process = server_process
    assert requests.get(url + "/api/flows", timeout=5).status_code == 401
    assert requests.get(url + "/api/flows", headers={"Authorization": "Bearer K"}, timeout=5).json() == []
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "Traceback" not in stderr


def test_port_in_use_is_one_line_and_exit_3(server_process: tuple[str, subprocess.Popen[str]], tmp_path: Path) -> None:
    url, _ = server_process
    port = url.rsplit(":", 1)[1]
    result = subprocess.run(
        [sys.executable, "-m", "localagent.cli.main", "server", "--address", f"127.0.0.1:{port}",
         "--database", f"sqlite:///{tmp_path / 'other.db'}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        f"ServiceError: address 127.0.0.1:{port} is already in use; stop the other server or choose another --address"
    ]


def test_no_key_refuses_public_address(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "localagent.cli.main", "server", "--address", "0.0.0.0:0",
         "--database", f"sqlite:///{tmp_path / 'x.db'}"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "LOCALAGENT_SERVER_API_KEYS": ""},
    )  # fmt: skip
    assert result.returncode == 3
    assert "without an API key" in result.stderr
