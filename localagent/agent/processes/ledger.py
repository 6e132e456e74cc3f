"""The ledger of started runs in ``state_dir/runs/``: what to stop when the agent that started them is gone.

One small JSON file per run whose processes may still be alive, written when its process starts and
removed once everything it started has been stopped and reaped. Each names the run (id, API, url, token),
its main process (pid, process group, start time: a pid reused by an unrelated process is never signalled),
its cgroup, and the agent (pid and start time). Two readers act on it:

- the agent's **watchdog** (:mod:`localagent.agent.processes.watchdog`), the moment the agent dies (``kill -9``, OOM):
  it stops the processes of every entry of that agent, so no run goes on unsupervised and a retry the API
  schedules later never overlaps its original;
- the **next agent** started on the same ``state_dir``, before its first claim: it stops whatever entries of
  a dead agent still have alive (the watchdog was killed too) and, once registered, reports each run
  ``Crashed`` with the run's own token if the API still shows it active. The token belongs to that claim
  only: once the API has handed the run out again it refuses the token, so a retry is never touched.

Usage::

    ledger = RunLedger(state_dir / "runs")
    ledger.record(processes, agent_pid=os.getpid())   # a run's process started
    ledger.forget(run_id)                              # it and everything it started are gone
    for entry in ledger.orphaned(): entry.stop()       # at start-up: entries of a dead agent
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from dataclasses import asdict, dataclass
from pathlib import Path

from localagent.agent.processes.tracking import (
    RunProcesses,
    find_run_processes,
    kill_cgroup,
    kill_pids,
    process_start_time,
    remove_cgroup,
)

log = logging.getLogger("localagent.agent")

LEDGER_DIR = "runs"


@dataclass(frozen=True)
class LedgerEntry:
    """One started run, as written in ``<run_id>.json``."""

    run_id: str
    api: str
    url: str
    label: str
    token: str
    pid: int
    start_time: int | None
    cgroup: str | None
    agent_pid: int
    agent_start_time: int | None
    term_grace: float = 0.0  # seconds its main process may take to end on SIGTERM when the agent died

    def ending_on_its_own(self) -> bool:
        """A run given time to end on the SIGTERM the agent's death sends (and whose main process still runs)."""
        return self.term_grace > 0 and self.leader_alive()

    def agent_alive(self) -> bool:
        return self.agent_start_time is not None and process_start_time(self.agent_pid) == self.agent_start_time

    def leader_alive(self) -> bool:
        return self.start_time is not None and process_start_time(self.pid) == self.start_time

    def alive(self) -> set[int]:
        """Live processes of this run (its main process only while it is the same process)."""
        exclude = frozenset({os.getpid()})
        found = set()
        if self.cgroup is not None:
            with contextlib.suppress(OSError, ValueError):
                found |= {int(p) for p in (Path(self.cgroup) / "cgroup.procs").read_text().split()}
        pgid = self.pid if self.leader_alive() else None
        found |= find_run_processes(self.token, pgid=pgid, exclude=exclude)
        return found - exclude

    def stop(self) -> int:
        """SIGKILL every live process of the run; how many there were."""
        count = 0
        leader = self.leader_alive()
        if self.cgroup is not None:
            count += kill_cgroup(Path(self.cgroup))
        if leader:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
                count += 1
        pgid = self.pid if leader else None
        count += kill_pids(find_run_processes(self.token, pgid=pgid, exclude=frozenset({os.getpid()})))
        if self.cgroup is not None:
            remove_cgroup(Path(self.cgroup), timeout=0.5)
        return count


class RunLedger:
    """The ``state_dir/runs/`` directory; safe for one agent's threads and its watchdog at once."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._agent_pid = os.getpid()
        self._agent_start = process_start_time(self._agent_pid)

    def record(self, processes: RunProcesses) -> None:
        tag = processes.tag
        entry = LedgerEntry(
            run_id=tag.run_id,
            api=tag.api,
            url=tag.url,
            label=tag.label,
            token=tag.token,
            pid=processes.pid,
            start_time=processes.start_time,
            cgroup=str(processes.cgroup) if processes.cgroup is not None else None,
            agent_pid=self._agent_pid,
            agent_start_time=self._agent_start,
            term_grace=tag.term_grace,
        )
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            temporary = self.directory / f".{tag.run_id}.tmp"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the run's token
            try:
                os.write(fd, json.dumps(asdict(entry)).encode())
            finally:
                os.close(fd)
            os.replace(temporary, self.directory / f"{tag.run_id}.json")
        except OSError as exc:
            log.error(
                "run %s: cannot record it in %s (%s): if the agent dies, nothing stops it",
                tag.run_id,
                self.directory,
                exc,
            )

    def forget(self, run_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / f"{run_id}.json").unlink()

    def entries(self) -> list[LedgerEntry]:
        found = []
        try:
            paths = sorted(self.directory.glob("*.json"))
        except OSError:
            return []
        for path in paths:
            try:
                found.append(LedgerEntry(**json.loads(path.read_bytes())))
            except (OSError, ValueError, TypeError) as exc:
                log.error("%s is not a ledger entry (%s); removing it", path, exc)
                with contextlib.suppress(OSError):
                    path.unlink()
        return found

    def of_agent(self, agent_pid: int) -> list[LedgerEntry]:
        return [entry for entry in self.entries() if entry.agent_pid == agent_pid]

    def orphaned(self) -> list[LedgerEntry]:
        """Entries of agents that are no longer running (never this agent's own)."""
        return [entry for entry in self.entries() if not entry.agent_alive()]
