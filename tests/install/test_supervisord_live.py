"""A real supervisord runs the generated program: it keeps the agent alive and stopping it drains a run.

supervisord's own sections (socket, pidfile, logs, rpcinterface) live in a small main config written
here; it ``[include]``s the file ``localagent install supervisord -o`` wrote, as a distribution's
``/etc/supervisor/supervisord.conf`` includes ``conf.d/*.conf``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import requests

from localagent.api.client import ApiClient
from localagent.api.models import FlowRun, FlowRunCreate, FlowSpec, StateName
from localagent.errors import ApiError
from tests.install.support import localagent
from tests.ports import free_ports

KEY = "sk-live-supervisord-test-key-42"
PROGRAM = "agent"
WAIT = 45.0
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = WAIT) -> T:
    """Poll ``probe`` until it returns something other than None (or fail naming ``what``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Supervisor:
    """supervisord in the foreground with its own socket, pidfile and logs, plus supervisorctl."""

    def __init__(self, main_conf: Path, env: dict[str, str]) -> None:
        self.main_conf = main_conf
        self.env = env
        self.process = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(main_conf), "-n"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(self.main_conf), *args],
            env=self.env, capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip

    def pid(self) -> int | None:
        text = self.ctl("pid", PROGRAM).stdout.strip()
        return int(text) if text.isdigit() and int(text) > 0 else None

    def shutdown(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def healthy(port: int) -> bool | None:
    try:
        return True if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200 else None
    except requests.RequestException:
        return None


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory for the unix socket (its path must fit in ~100 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="la-sv-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
def test_supervisord_restarts_a_killed_agent_and_stop_drains_a_run(tmp_path: Path, short_dir: Path) -> None:
    api_port, health_port = free_ports(2)
    (tmp_path / "agent.toml").write_text(
        '[agent]\nname = "svc"\nrun_unlabeled = true\npoll_interval = "1s"\nstate_dir = "state"\n\n'
        f'[server]\naddress = "127.0.0.1:{api_port}"\n\n'
        f'[health]\naddress = "127.0.0.1:{health_port}"\n\n'
        '[runs]\ndrain_timeout = "30s"\nstop_grace = "2s"\n'
    )
    generated = localagent(
        "install", "supervisord", "-c", "agent.toml", "--key", KEY, "--service-name", PROGRAM,
        "-o", "program.conf", cwd=tmp_path,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    program_conf = (tmp_path / "program.conf").read_text()
    assert KEY not in program_conf
    assert (tmp_path / "state" / "api.key").read_text().strip() == KEY

    main_conf = tmp_path / "supervisord.conf"
    main_conf.write_text(
        f"[unix_http_server]\nfile={short_dir}/s.sock\n\n"
        f"[supervisord]\nlogfile={tmp_path}/supervisord.log\npidfile={tmp_path}/supervisord.pid\n"
        f"childlogdir={tmp_path}\nnodaemon=true\n\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
        f"[supervisorctl]\nserverurl=unix://{short_dir}/s.sock\n\n"
        f"[include]\nfiles={tmp_path}/program.conf\n"
    )
    # supervisord's own environment: nothing of this shell's LOCALAGENT_ variables, a HOME of its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALAGENT_")}
    env["HOME"] = str(short_dir)
    supervisor = Supervisor(main_conf, env)
    try:
        first_pid = wait_for("the agent to start", supervisor.pid)
        wait_for("/health to answer 200", lambda: healthy(health_port))

        os.kill(first_pid, signal.SIGKILL)
        second_pid = wait_for("supervisord to restart the agent", lambda: _other_pid(supervisor, first_pid))
        wait_for("/health to answer 200 after the restart", lambda: healthy(health_port))
        assert second_pid != first_pid

        with ApiClient(f"http://127.0.0.1:{api_port}", key=KEY, timeout=10.0) as api:
            api.register_flow(FlowSpec(name="nap", command=["/bin/sh", "-c", "echo napping; sleep 3; echo awake"]))
            run = api.create_run(FlowRunCreate(flow="nap"))
            wait_for("the run to be running", lambda: _in_state(api, run.id, StateName.RUNNING))

        stopped = supervisor.ctl("stop", PROGRAM)  # returns once the agent has exited
        assert "stopped" in stopped.stdout, stopped.stdout + stopped.stderr
        log = (tmp_path / "supervisord.log").read_text()
        assert f"stopped: {PROGRAM} (exit status 0)" in log, log

        supervisor.ctl("start", PROGRAM)  # the embedded API (and its database) comes back with the agent
        with ApiClient(f"http://127.0.0.1:{api_port}", key=KEY, timeout=10.0, retries=10, backoff=0.5) as api:
            ended = wait_for("the API to answer", lambda: _run_or_none(api, run.id))
            assert ended.state == StateName.SUCCESS, ended.history
            assert ended.exit_code == 0
    finally:
        supervisor.shutdown()


def _other_pid(supervisor: Supervisor, old: int) -> int | None:
    pid = supervisor.pid()
    return pid if pid is not None and pid != old else None


def _in_state(api: ApiClient, run_id: str, state: StateName) -> FlowRun | None:
    run = api.get_run(run_id)
    return run if run.state == state else None


def _run_or_none(api: ApiClient, run_id: str) -> FlowRun | None:
    try:
        return api.get_run(run_id)
    except ApiError:  # the embedded API is still starting
        return None
