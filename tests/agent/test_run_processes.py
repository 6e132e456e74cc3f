"""Every process a run started is stopped with it: through its cgroup, or /proc when there is none."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from localagent.agent.processes.ledger import RunLedger
from localagent.agent.processes.tracking import ProcessTracking, RunTag
from localagent.agent.run import reaper as reaper_module
from localagent.agent.run.reaper import ChildReaper
from tests.e2e.support import wait_for
from tests.e2e.test_run_supervision import DAEMONIZE
from tests.support.processes import alive

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux process tracking")

# The daemon also drops its environment (so no token to find it by) before it sleeps.
DAEMONIZE_BARE = DAEMONIZE.replace("time.sleep(300)", 'os.execve("/bin/sleep", ["sleep", "300"], {})')


@pytest.fixture
def reaper() -> Iterator[ChildReaper]:
    child_reaper = ChildReaper()
    child_reaper.start()
    yield child_reaper
    reaper_module._CORE.tracking = reaper_module._CORE.ledger = None
    child_reaper.stop()


def _run(reaper: ChildReaper, tmp_path: Path, script: str, token: str) -> tuple[int, Path]:
    pidfile = tmp_path / "daemon.pid"
    env = {"PATH": os.environ["PATH"], "LOCALAGENT_API_TOKEN": token}
    tag = RunTag("run-1", "embedded", "f/r", token)
    proc = reaper.spawn([sys.executable, "-c", script, str(pidfile)], cwd=str(tmp_path), env=env, tag=tag)
    assert proc.wait(30) == 0
    return int(pidfile.read_text()), pidfile


def test_proc_tracking_stops_a_double_forked_daemon_by_its_token(reaper: ChildReaper, tmp_path: Path) -> None:
    ledger = RunLedger(tmp_path / "runs")
    reaper.track_runs(ProcessTracking(None), ledger)
    daemon, _ = _run(reaper, tmp_path, DAEMONIZE, "token-a")
    wait_for(lambda: not alive(daemon), what="the daemon to be stopped")
    assert ledger.entries() == [], "the run is forgotten once everything it started is gone"


def test_cgroup_tracking_stops_a_daemon_that_dropped_its_environment(reaper: ChildReaper, tmp_path: Path) -> None:
    tracking = ProcessTracking.detect()
    if tracking.cgroup_root is None:
        pytest.skip("this system does not let the agent create cgroups (not root, or no cgroup v2)")
    try:
        reaper.track_runs(tracking)
        daemon, _ = _run(reaper, tmp_path, DAEMONIZE_BARE, "token-b")
        wait_for(lambda: not alive(daemon), what="the daemon to be stopped")
        wait_for(lambda: not (tracking.cgroup_root / "run-run-1").exists(), what="the run's cgroup to go")
    finally:
        tracking.close()
    assert not tracking.cgroup_root.exists()
