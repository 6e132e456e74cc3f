"""Reaping every child the moment it exits, grandchildren re-parented to us included.

On Linux the agent becomes a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``): a process orphaned
below one of our runs (``sleep 300 &``) is re-parented to the agent instead of to init, so it can be
stopped and reaped here and never lingers as a zombie, also when the agent is PID 1 in a container.

Runs spawned with a :class:`~localagent.agent.processes.tracking.RunTag` (once :meth:`ChildReaper.track_runs` was
called) are tracked whole: a cgroup per run, or /proc, finds what left the process group too (a daemon that
forked twice), and it is stopped with the run; the run is listed in the ledger until then.

One thread per process waits on *all* children (``waitid(P_ALL)``). A run's exit status is recorded on
its :class:`ChildProcess` handle (never through ``Popen.wait``, which would race with this thread). Before
a run's main process is reaped, while its pid (= its process-group id) cannot be reused yet, whatever is
left of its process group is sent SIGKILL.

Usage::

    reaper = ChildReaper(); reaper.start()
    proc = reaper.spawn(["sleep", "1"], cwd="/tmp", env={"PATH": "/usr/bin:/bin"})
    proc.wait()  # -> 0
    reaper.stop()

Caveat: like init, this reaps children it did not spawn. Code in the same process that uses
``subprocess.run`` while a reaper is started may see ``returncode`` 0 for a child this thread reaped.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from localagent.agent.processes.ledger import RunLedger
    from localagent.agent.processes.tracking import ProcessTracking, RunProcesses, RunTag

log = logging.getLogger("localagent.run")

PR_SET_CHILD_SUBREAPER = 36
PR_SET_PDEATHSIG = 1
_IDLE_RECHECK = 5.0  # seconds between checks for children while there are none (a safety net only)


def become_subreaper() -> bool:
    """Make this process a child subreaper on Linux; ``False`` (and nothing done) elsewhere or on failure."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            log.warning("could not become a child subreaper: %s", os.strerror(ctypes.get_errno()))
            return False
    except OSError as exc:
        log.warning("could not become a child subreaper: %s", exc)
        return False
    return True


class ChildProcess:
    """A process started by :meth:`ChildReaper.spawn`; its exit status comes from the reaper thread.

    ``returncode`` follows ``subprocess`` conventions: the exit code, or ``-N`` when killed by signal N.
    """

    def __init__(self, popen: subprocess.Popen[bytes], on_exit: Callable[[ChildProcess], None] | None) -> None:
        self.popen = popen
        self.pid: int = popen.pid
        self.returncode: int | None = None
        self.exited = threading.Event()
        self._on_exit = on_exit
        self.processes: RunProcesses | None = None  # every process of the run, when spawned with a tag

    @property
    def stdout_fd(self) -> int | None:
        return self.popen.stdout.fileno() if self.popen.stdout is not None else None

    @property
    def stderr_fd(self) -> int | None:
        return self.popen.stderr.fileno() if self.popen.stderr is not None else None

    def wait(self, timeout: float | None = None) -> int | None:
        """The return code once the process has been reaped, or ``None`` if ``timeout`` passed first."""
        self.exited.wait(timeout)
        return self.returncode

    def signal_group(self, signum: int) -> bool:
        """Send ``signum`` to the process group (this process leads its own session); ``False`` if it is gone."""
        try:
            os.killpg(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def _record_exit(self, status: int) -> None:
        self.returncode = os.waitstatus_to_exitcode(status)
        # Popen must never wait for a pid we reaped (it could belong to a new process by then).
        self.popen.returncode = self.returncode
        self.exited.set()
        if self._on_exit is not None:
            try:
                self._on_exit(self)
            except Exception:
                log.exception("exit callback of pid %d failed", self.pid)


def _die_with_parent(signum: int) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``signum`` when the agent dies (also by SIGKILL)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)  # loaded before the fork
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # the agent died between fork and prctl
            os.kill(os.getpid(), signum)

    return preexec


class _Spawner:
    """One daemon thread, never ending, that forks the children which must die with the agent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[tuple[Callable[[], ChildProcess], Future[ChildProcess]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def call(self, job: Callable[[], ChildProcess]) -> ChildProcess:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="child-spawner", daemon=True)
                self._thread.start()
        done: Future[ChildProcess] = Future()
        self._jobs.put((job, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            job, done = self._jobs.get()
            try:
                done.set_result(job())
            except BaseException as exc:  # handed to the caller, which raises it
                done.set_exception(exc)


_SPAWNER = _Spawner()


class _ReaperCore:
    """The one reaping thread of this process, shared by every started :class:`ChildReaper`."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._children: dict[int, tuple[ChildProcess, bool]] = {}
        self._users = 0
        self._generation = 0
        self._thread: threading.Thread | None = None
        self.subreaper = False
        self.tracking: ProcessTracking | None = None
        self.ledger: RunLedger | None = None

    def acquire(self) -> None:
        with self._lock:
            self._users += 1
            if not self.subreaper:
                self.subreaper = become_subreaper()
            if self._thread is None:
                self._thread = threading.Thread(target=self._reap_forever, name="child-reaper", daemon=True)
                self._thread.start()

    def release(self) -> threading.Thread | None:
        with self._lock:
            self._users = max(0, self._users - 1)
            self._lock.notify_all()
            return self._thread

    def spawn(
        self,
        argv: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str],
        executable: str | None,
        kill_group_on_exit: bool,
        on_exit: Callable[[ChildProcess], None] | None,
        tag: RunTag | None = None,
        parent_death_signal: int | None = None,
    ) -> ChildProcess:
        if parent_death_signal is not None and sys.platform.startswith("linux"):
            # The kernel sends the signal when the *thread* that forked the child ends: fork on a thread that
            # lives as long as the process, never on a claim thread that ends at the start of a drain.
            return _SPAWNER.call(
                lambda: self._spawn(
                    argv, cwd, env, executable, kill_group_on_exit, on_exit, _die_with_parent(parent_death_signal), tag
                )
            )
        return self._spawn(argv, cwd, env, executable, kill_group_on_exit, on_exit, None, tag)

    def _spawn(
        self,
        argv: Sequence[str],
        cwd: str,
        env: Mapping[str, str],
        executable: str | None,
        kill_group_on_exit: bool,
        on_exit: Callable[[ChildProcess], None] | None,
        preexec: Callable[[], None] | None,
        tag: RunTag | None,
    ) -> ChildProcess:
        # Held across fork+exec so the reaper cannot see this pid exit before it is registered.
        with self._lock:
            if self._thread is None:
                raise RuntimeError("ChildReaper.spawn() before start()")
            popen = subprocess.Popen(
                list(argv),
                executable=executable,
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
                preexec_fn=preexec,
            )
            child = ChildProcess(popen, on_exit)
            if tag is not None and self.tracking is not None:
                child.processes = self.tracking.track(tag, child.pid)
                if self.ledger is not None:
                    self.ledger.record(child.processes)
            self._children[child.pid] = (child, kill_group_on_exit)
            self._generation += 1
            self._lock.notify_all()
            return child

    def _reap_forever(self) -> None:
        while True:
            with self._lock:
                generation = self._generation
            try:
                pid, status = self._next_exited()
            except ChildProcessError:
                with self._lock:
                    if self._generation != generation:
                        continue  # a child was spawned meanwhile
                    if self._users == 0:
                        self._thread = None
                        return
                    self._lock.wait(_IDLE_RECHECK)
                continue
            if pid:
                self._reap(pid, status)

    @staticmethod
    def _next_exited() -> tuple[int, int | None]:
        """Block until some child has exited: its pid, and its status if it had to be reaped already.

        Where ``waitid(WNOWAIT)`` exists the child is left a zombie, so its process group can still be
        killed safely before :meth:`_reap` collects it.
        """
        if hasattr(os, "waitid") and hasattr(os, "WNOWAIT"):
            result = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
            return (result.si_pid, None) if result is not None else (0, None)
        pid, status = os.waitpid(-1, 0)
        return pid, status

    def _reap(self, pid: int, status: int | None) -> None:
        with self._lock:
            entry = self._children.get(pid)
        if entry is not None and entry[1]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            if entry[0].processes is not None:  # what left the group (setsid, a double fork) too
                entry[0].processes.kill_rest()
        if status is None:
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                status = None  # someone else (a foreign Popen.wait) reaped it first
        with self._lock:
            entry = self._children.pop(pid, None)
        if entry is None:
            log.debug("reaped orphan pid %d", pid)
            if self.tracking is not None:
                self.tracking.remove_emptied()  # a run's cgroup may have waited for this process
            return
        processes = entry[0].processes
        if processes is not None:
            processes.release()
            if self.ledger is not None:
                self.ledger.forget(processes.tag.run_id)
        if status is None:
            log.warning("pid %d was reaped elsewhere; its exit status is unknown", pid)
            status = 255 << 8
        entry[0]._record_exit(status)


_CORE = _ReaperCore()


class ChildReaper:
    """Makes this process a child subreaper and reaps every child the moment it exits.

    ``reaper = ChildReaper(); reaper.start(); proc = reaper.spawn(argv, cwd=..., env=...); reaper.stop()``
    All instances share one reaping thread; it ends when the last instance stopped and no child is left.
    """

    def __init__(self) -> None:
        self._started = False

    @property
    def is_subreaper(self) -> bool:
        return _CORE.subreaper

    def track_runs(self, tracking: ProcessTracking, ledger: RunLedger | None = None) -> None:
        """Track every process of runs spawned with a ``tag`` (a cgroup or /proc) and stop them with the run.

        With a ``ledger``, each run is recorded there while any of its processes may live.
        """
        _CORE.tracking, _CORE.ledger = tracking, ledger

    def start(self) -> None:
        if not self._started:
            _CORE.acquire()
            self._started = True

    def stop(self, timeout: float = 1.0) -> None:
        """Stop reaping once no child is left (children still running keep being reaped until they exit)."""
        if self._started:
            self._started = False
            thread = _CORE.release()
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout)

    def spawn(
        self,
        argv: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str],
        executable: str | None = None,
        kill_group_on_exit: bool = True,
        on_exit: Callable[[ChildProcess], None] | None = None,
        tag: RunTag | None = None,
        parent_death_signal: int | None = None,
    ) -> ChildProcess:
        """Start ``argv`` in its own session with stdin from /dev/null and stdout/stderr as pipes.

        With ``kill_group_on_exit`` whatever is left of its process group is killed when it exits; with a
        ``tag`` (and :meth:`track_runs`), every process the run started is, wherever it went. With
        ``parent_death_signal`` (Linux) the process gets that signal if the agent dies, even by SIGKILL.
        ``on_exit`` runs on the reaper thread right after the status is recorded; keep it short.
        Raises ``OSError`` when the program cannot be executed.
        """
        if not self._started:
            raise RuntimeError("ChildReaper.spawn() before start()")
        return _CORE.spawn(
            argv,
            cwd=cwd,
            env=env,
            executable=executable,
            kill_group_on_exit=kill_group_on_exit,
            on_exit=on_exit,
            tag=tag,
            parent_death_signal=parent_death_signal,
        )
