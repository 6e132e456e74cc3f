"""ChildReaper: exit statuses reach their owners; every child and orphaned grandchild is reaped."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator

import pytest

from localagent.agent.run.reaper import ChildReaper
from tests.support.processes import proc_state, wait_gone

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checks /proc and the subreaper")

ENV = {"PATH": os.environ.get("PATH", os.defpath)}


@pytest.fixture
def reaper() -> Iterator[ChildReaper]:
    reaper = ChildReaper()
    reaper.start()
    yield reaper
    reaper.stop()


def test_exit_codes_and_signals_reach_the_owner(reaper: ChildReaper) -> None:
    ok = reaper.spawn(["true"], cwd="/", env=ENV)
    three = reaper.spawn(["sh", "-c", "exit 3"], cwd="/", env=ENV)
    killed = reaper.spawn(["sh", "-c", "kill -9 $$"], cwd="/", env=ENV)
    assert ok.wait(10) == 0
    assert three.wait(10) == 3
    assert killed.wait(10) == -signal.SIGKILL
    assert three.popen.returncode == 3  # Popen never waits on a pid the reaper collected
    for proc in (ok, three, killed):
        assert proc_state(proc.pid) is None


def test_many_fast_children_are_never_missed(reaper: ChildReaper) -> None:
    procs = [reaper.spawn(["sh", "-c", f"exit {i % 7}"], cwd="/", env=ENV) for i in range(60)]
    assert [p.wait(10) for p in procs] == [i % 7 for i in range(60)]


def test_process_is_a_child_subreaper(reaper: ChildReaper) -> None:
    assert reaper.is_subreaper


def test_orphaned_grandchild_is_reparented_and_reaped(reaper: ChildReaper) -> None:
    # The grandchild outlives its parent; without the subreaper it would go to init.
    proc = reaper.spawn(["sh", "-c", "sleep 0.5 & echo $!"], cwd="/", env=ENV, kill_group_on_exit=False)
    assert proc.popen.stdout is not None
    grandchild = int(proc.popen.stdout.readline())
    assert proc.wait(10) == 0
    with open(f"/proc/{grandchild}/stat") as stat:
        assert int(stat.read().rsplit(")", 1)[1].split()[1]) == os.getpid()  # its parent is now us
    assert wait_gone(grandchild) is None  # reaped when it exited: no zombie left


def test_group_is_killed_when_the_main_process_exits(reaper: ChildReaper) -> None:
    proc = reaper.spawn(["sh", "-c", "sleep 300 & echo $!"], cwd="/", env=ENV)
    assert proc.popen.stdout is not None
    grandchild = int(proc.popen.stdout.readline())
    assert proc.wait(10) == 0
    assert wait_gone(grandchild) is None  # killed and reaped, not a zombie
    assert proc.popen.stdout.read() == b""  # nothing holds the pipe any more
    proc.popen.stdout.close()
    assert proc.popen.stderr is not None
    proc.popen.stderr.close()


def test_spawn_failure_raises_oserror(reaper: ChildReaper) -> None:
    with pytest.raises(OSError):
        reaper.spawn(["/nonexistent/program"], cwd="/", env=ENV)


def test_spawn_before_start_is_refused() -> None:
    with pytest.raises(RuntimeError):
        ChildReaper().spawn(["true"], cwd="/", env=ENV)
