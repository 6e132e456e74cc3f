"""Every process a run started, found and stopped: a cgroup per run where the system allows, else /proc.

A run's main process leads its own session and process group, but a process can leave both (``setsid``
after a double fork) and outlive the run. Two ways to still find it:

- **A cgroup v2 per run** (Linux, when the agent may create cgroups below its own: as root, or with systemd's
  ``Delegate=yes``). The run's process is moved into ``<agent's cgroup>/localagent-<agent pid>/run-<run id>``
  right after it starts; everything it forks stays in there, whatever session it makes. Stopping the run is
  one write to ``cgroup.kill`` (or SIGKILL to each member on kernels before 5.14).
- **/proc** otherwise: a process is the run's when its environment holds the run's ``LOCALAGENT_API_TOKEN``
  (unique to one claim of one run, so a retry of the same run elsewhere on this host is never taken for it),
  or when it is in the run's process group or session. A process that clears its environment *and* leaves
  the session escapes this one; the cgroup catches it.

The move into the cgroup happens right after ``exec`` (Python cannot start a child inside a cgroup): a
process the run forks in the microseconds before the move stays outside it, and is stopped with the run
only if it stays in the run's process group.

Usage::

    tracking = ProcessTracking.detect()          # once per agent: cgroups if allowed
    processes = tracking.track(RunTag(...), pid)  # right after the run's process started
    processes.kill_rest()                         # its main process exited: stop what it left behind
    processes.release()                           # remove its (empty) cgroup
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("localagent.run")

CGROUP_PREFIX = "localagent-"
TOKEN_VARIABLE = "LOCALAGENT_API_TOKEN"
_KILL_ROUNDS = 20  # SIGKILL rounds without cgroup.kill (members may fork while we kill)


@dataclass(frozen=True)
class RunTag:
    """What identifies one started run: its id, the API that handed it out, its token (unique to the claim)."""

    run_id: str
    api: str
    label: str
    token: str
    url: str = ""
    # Seconds the run may take to end on the SIGTERM it gets when the agent dies, before the watchdog kills
    # it: a Prefect flow run's engine reports Crashed itself on SIGTERM (0: killed at once).
    term_grace: float = 0.0


def process_start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (field 22 of /proc/pid/stat); None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _stat_ids(pid: int) -> tuple[int, int, int] | None:
    """(ppid, pgid, sid) of ``pid``, or None if gone (or a zombie: nothing left to stop)."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)  # the cheapest way: this runs once per process
        try:
            data = os.read(fd, 1024)
        finally:
            os.close(fd)
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    if len(fields) < 4 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[1]), int(fields[2]), int(fields[3])


def _all_pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def _process_table() -> dict[int, tuple[int, int, int]]:
    """Every live process: pid -> (ppid, pgid, sid)."""
    table = {}
    for pid in _all_pids():
        ids = _stat_ids(pid)
        if ids is not None:
            table[pid] = ids
    return table


def _has_in_environment(pid: int, needle: bytes) -> bool:
    try:
        if os.stat(f"/proc/{pid}").st_uid != os.getuid() and os.getuid() != 0:
            return False
        with open(f"/proc/{pid}/environ", "rb") as environ:
            return needle in environ.read().split(b"\0")
    except OSError:
        return False


def find_run_processes(
    token: str, *, pgid: int | None = None, parent: int | None = None, exclude: frozenset[int] = frozenset()
) -> set[int]:
    """Live processes of a run, and every descendant of them.

    A process is the run's when it is in process group or session ``pgid``, or when its environment holds
    the run's ``token``. With ``parent`` only that process's children have their environment read: the
    agent, a subreaper, is the parent of every process orphaned below its runs (a daemon that forked twice),
    so this finds them without reading every process's environment.
    """
    needle = f"{TOKEN_VARIABLE}={token}".encode() if token else None
    table = _process_table()
    found: set[int] = set()
    children: dict[int, list[int]] = {}
    for pid, (ppid, group, session) in table.items():
        children.setdefault(ppid, []).append(pid)
        if pid in exclude:
            continue
        in_group = pgid is not None and pgid in (group, session)
        if in_group or (needle is not None and parent in (None, ppid) and _has_in_environment(pid, needle)):
            found.add(pid)
    pending = list(found)
    while pending:
        for child in children.get(pending.pop(), ()):
            if child not in found and child not in exclude:
                found.add(child)
                pending.append(child)
    return found


def kill_pids(pids: set[int]) -> int:
    """SIGKILL each of ``pids``; how many were sent one."""
    killed = 0
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed += 1
    return killed


def cgroup_members(cgroup: Path) -> set[int]:
    try:
        return {int(line) for line in (cgroup / "cgroup.procs").read_text().split()}
    except (OSError, ValueError):
        return set()


def kill_cgroup(cgroup: Path) -> int:
    """Stop every process in ``cgroup``; how many there were (0 when it is empty or gone)."""
    members = cgroup_members(cgroup)
    if not members:
        return 0
    try:
        (cgroup / "cgroup.kill").write_text("1")
        return len(members)
    except OSError:
        pass  # a kernel before 5.14: kill them one by one, again while they fork
    count = 0
    for _ in range(_KILL_ROUNDS):
        members = cgroup_members(cgroup)
        if not members:
            break
        count += kill_pids(members)
        time.sleep(0.01)
    return count


def remove_cgroup(cgroup: Path, timeout: float = 1.0) -> bool:
    """Remove an emptied cgroup; it stays busy until its killed members are reaped, so try for ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            cgroup.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)


def _own_cgroup() -> Path | None:
    """This process's cgroup v2 directory, when cgroup v2 is mounted (unified or hybrid)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    relative = next((line[3:] for line in lines if line.startswith("0::")), None)
    mount = next((line.split()[1] for line in mounts if line.split()[2:3] == ["cgroup2"]), None)
    if relative is None or mount is None:
        return None
    return Path(mount) / relative.lstrip("/")


def _remove_dead_agents_cgroups(parent: Path) -> None:
    """Remove the empty ``localagent-<pid>`` cgroups of agents that died with no watchdog to clean up."""
    with contextlib.suppress(OSError):
        for directory in parent.glob(f"{CGROUP_PREFIX}*"):
            pid = directory.name[len(CGROUP_PREFIX) :]
            if pid.isdigit() and process_start_time(int(pid)) is None:
                for child in directory.glob("run-*"):
                    if not cgroup_members(child):
                        remove_cgroup(child, timeout=0)
                remove_cgroup(directory, timeout=0)


class RunProcesses:
    """The processes of one started run: its cgroup (if any), its process group and its token."""

    def __init__(self, tag: RunTag, pid: int, cgroup: Path | None, tracking: ProcessTracking | None = None) -> None:
        self.tag = tag
        self._tracking = tracking
        self.pid = pid
        self.cgroup = cgroup
        self.start_time = process_start_time(pid)

    def kill_rest(self) -> int:
        """The main process exited (still a zombie): SIGKILL everything the run left; how many processes.

        With a cgroup that is one write. Without, /proc is read: the run's group and session, and the
        agent's children (orphans come back to the agent, a subreaper) that hold the run's token.
        """
        if self.cgroup is not None:
            count = kill_cgroup(self.cgroup)
        else:
            agent = os.getpid()
            exclude = frozenset({agent, self.pid})
            count = kill_pids(find_run_processes(self.tag.token, pgid=self.pid, parent=agent, exclude=exclude))
        if count:
            log.warning(
                "run %s (%s): stopped %d process(es) it left running (daemons count as part of the run)",
                self.tag.run_id,
                self.tag.label,
                count,
            )
        return count

    def release(self) -> None:
        """Remove the run's cgroup; one still busy (killed members not yet gone) is retried later."""
        if self.cgroup is not None and not remove_cgroup(self.cgroup, timeout=0) and self._tracking is not None:
            self._tracking.remove_later(self.cgroup)


class ProcessTracking:
    """How this agent tracks its runs' processes: ``cgroup_root`` when it may create cgroups, else /proc only."""

    def __init__(self, cgroup_root: Path | None) -> None:
        self.cgroup_root = cgroup_root
        self._busy: list[Path] = []  # emptied run cgroups to remove once their last member is gone
        self._lock = threading.Lock()

    @classmethod
    def detect(cls, *, use_cgroups: bool = True) -> ProcessTracking:
        """Try to make ``localagent-<pid>`` below the agent's own cgroup; /proc tracking when that fails."""
        if not use_cgroups:
            return cls(None)
        own = _own_cgroup()
        if own is None:
            return cls(None)
        _remove_dead_agents_cgroups(own)
        root = own / f"{CGROUP_PREFIX}{os.getpid()}"
        try:
            root.mkdir(exist_ok=True)
        except OSError as exc:
            log.info("runs are tracked through /proc, not cgroups (cannot create %s: %s)", root, exc.strerror)
            return cls(None)
        log.debug("each run gets a cgroup below %s", root)
        return cls(root)

    def track(self, tag: RunTag, pid: int) -> RunProcesses:
        """Put the just started ``pid`` into a cgroup of its own (when available) and describe the run."""
        cgroup: Path | None = None
        if self.cgroup_root is not None:
            candidate = self.cgroup_root / f"run-{tag.run_id}"
            try:
                candidate.mkdir(exist_ok=True)
                (candidate / "cgroup.procs").write_text(str(pid))
                cgroup = candidate
            except OSError as exc:
                log.warning("run %s: not moved into cgroup %s (%s); tracked through /proc", tag.run_id, candidate, exc)
                with contextlib.suppress(OSError):
                    candidate.rmdir()
        self.remove_emptied()
        return RunProcesses(tag, pid, cgroup, self)

    def remove_later(self, cgroup: Path) -> None:
        with self._lock:
            self._busy.append(cgroup)

    def remove_emptied(self) -> None:
        """Remove the run cgroups that were still busy at their run's end (call it when a process was reaped)."""
        with self._lock:
            self._busy = [cgroup for cgroup in self._busy if not remove_cgroup(cgroup, timeout=0)]

    def close(self) -> None:
        """Remove the agent's cgroup directory (every run's cgroup in it is gone by then)."""
        if self.cgroup_root is None:
            return
        with contextlib.suppress(OSError):
            for child in self.cgroup_root.iterdir():
                if child.is_dir():
                    kill_cgroup(child)
                    remove_cgroup(child, timeout=0.2)
        with contextlib.suppress(OSError):
            self.cgroup_root.rmdir()
