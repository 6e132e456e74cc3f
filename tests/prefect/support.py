"""A real Prefect 3 server for tests, and a few REST helpers to make deployments and runs on it.

Prefect cannot share the test environment (its pins would change installed packages), so the tests use an
interpreter that has it: ``LOCALAGENT_TEST_PREFECT_PYTHON`` (``.ci/run`` makes a venv and sets it). Tests
marked ``@pytest.mark.prefect`` are skipped, with that reason, when it is not set or cannot import prefect.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import time
import uuid
from functools import cache
from pathlib import Path
from typing import Any

import requests

from tests.ports import free_port

PREFECT_PYTHON_ENV = "LOCALAGENT_TEST_PREFECT_PYTHON"
FLOWS = """
import os
import time

from prefect import flow, get_run_logger


@flow
def hello(name: str = "world", sleep: float = 0.0):
    get_run_logger().info("hello %s greeting=%s", name, os.environ.get("GREETING"))
    print("printed by the flow")
    time.sleep(sleep)
    return name
"""


@cache
def prefect_python() -> tuple[str | None, str]:
    """(the interpreter that has prefect, or None; the reason it is missing)."""
    python = os.environ.get(PREFECT_PYTHON_ENV, "")
    if not python:
        return None, f"{PREFECT_PYTHON_ENV} is not set (a python with prefect==3.9.1; .ci/run makes one)"
    try:
        done = subprocess.run([python, "-c", "import prefect"], capture_output=True, timeout=120)
    except OSError as exc:
        return None, f"{PREFECT_PYTHON_ENV}={python} cannot run: {exc}"
    if done.returncode != 0:
        return None, f"{PREFECT_PYTHON_ENV}={python} cannot import prefect"
    return python, ""


class PrefectServer:
    """``prefect server start`` on a free loopback port with a temporary PREFECT_HOME (SQLite, offline)."""

    def __init__(self, python: str, home: Path, *, auth_string: str | None = None) -> None:
        self.python = python
        self.home = home
        self.auth_string = auth_string  # PREFECT_SERVER_API_AUTH_STRING: every call needs HTTP basic auth
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": self.url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        }
        self.headers: dict[str, str] = {}
        if auth_string is not None:
            self.env["PREFECT_SERVER_API_AUTH_STRING"] = auth_string
            self.env["PREFECT_API_AUTH_STRING"] = auth_string
            self.headers["Authorization"] = "Basic " + base64.b64encode(auth_string.encode()).decode()
        self.log = home / "server.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180.0) -> None:
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                [self.python, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"prefect server exited:\n{self.log.read_text(errors='replace')[-3000:]}")
            try:
                if requests.get(self.url + "/health", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"prefect server did not answer in {timeout}s")

    def stop(self) -> None:
        """Stop the server (its database stays: :meth:`start` brings the same server back on the same port)."""
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)

    # -- REST helpers -----------------------------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None) -> Any:
        # A loaded SQLite server answers 503 now and then (a busy database); Prefect's own client retries too.
        deadline = time.monotonic() + 120
        delay = 0.5
        while True:
            response = requests.request(method, self.url + path, json=body, timeout=30, headers=self.headers)
            if response.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        assert response.status_code < 400, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def deployment(
        self, pool: str, flows_dir: Path, *, job_variables: dict[str, Any] | None = None, queue: str | None = None
    ) -> str:
        """A deployment of ``hello`` in ``flows_dir`` (written there), pulled with set_working_directory."""
        (flows_dir / "flows.py").write_text(FLOWS)
        flow_id = self.call("POST", "/flows/", {"name": "hello"})["id"]
        body: dict[str, Any] = {
            "name": f"d-{uuid.uuid4().hex[:8]}",
            "flow_id": flow_id,
            "work_pool_name": pool,
            "entrypoint": "flows.py:hello",
            "pull_steps": [{"prefect.deployments.steps.set_working_directory": {"directory": str(flows_dir)}}],
            "job_variables": job_variables or {},
        }
        if queue is not None:
            body["work_queue_name"] = queue
        return str(self.call("POST", "/deployments/", body)["id"])

    def create_run(self, deployment_id: str, **body: Any) -> str:
        return str(self.call("POST", f"/deployments/{deployment_id}/create_flow_run", body)["id"])

    def run(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", f"/flow_runs/{run_id}")
        return result

    def states(self, run_id: str) -> list[str]:
        """The run's state types, oldest first."""
        history = self.call("GET", f"/flow_run_states/?flow_run_id={run_id}")
        return [state["type"] for state in sorted(history, key=lambda state: state["timestamp"])]

    def workers(self, pool: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.call("POST", f"/work_pools/{pool}/workers/filter", {})
        return found

    def state(self, run_id: str) -> str:
        return str(self.run(run_id)["state"]["type"])

    def wait_state(self, run_id: str, states: set[str], timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run["state"]["type"] in states:
                return run
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"run {run_id} is {run['state']['type']}, not in {sorted(states)} after {timeout}s"
                )
            time.sleep(0.2)

    def logs(self, run_id: str) -> list[str]:
        body = {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200}
        return [entry["message"] for entry in self.call("POST", "/logs/filter", body)]
