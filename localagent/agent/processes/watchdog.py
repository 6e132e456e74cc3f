"""The agent's watchdog: a small process that stops the agent's runs the moment the agent dies.

Runs are in sessions of their own, so nothing stops them when the agent is killed with SIGKILL (or by the
OOM killer): they would run on unsupervised while the API, having lost the agent, retries them elsewhere.
The agent therefore starts this watchdog first thing. It holds the read end of a pipe whose only write end
is in the agent, in a session of its own (a signal to the agent's process group does not reach it), and
blocks reading. The pipe ends when the agent exits, however it exits; the watchdog then stops every run the
agent's ledger (:mod:`localagent.agent.processes.ledger`) still lists, and exits. Runs recorded with a
``term_grace`` (Prefect flow runs, which got SIGTERM as their parent-death signal) get that long to end by
themselves first, so their engine can report them ``Crashed``; the agent writes the key of each Prefect
server it serves into the pipe, and the watchdog proposes ``Crashed`` for those the engine left running.
After a clean shutdown the ledger is empty and it has nothing to do.

A pipe rather than ``PR_SET_PDEATHSIG`` on each run: the parent-death signal fires when the *thread* that
forked dies (the agent starts runs from its claim thread, which ends before a drain), it reaches only the
run's main process (not what that process started), and it needs code between fork and exec, which is not
safe in a threaded Python process.

Usage::

    watchdog = Watchdog.start(ledger_dir, cgroup_root=tracking.cgroup_root)  # before the first run starts
    ...
    watchdog.close()  # the agent is done: the watchdog sweeps (normally nothing) and exits

Entry point: ``python -m localagent.agent.processes.watchdog text|json LEDGER_DIR AGENT_PID [CGROUP_ROOT]``,
the pipe as stdin.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from localagent.agent.processes.ledger import LedgerEntry

log = logging.getLogger("localagent.agent")

PREFECT_RUN_PREFIX = "prefect-run:"  # the "token" of a Prefect flow run (localagent.prefect.jobs)


class Watchdog:
    """The agent's side of the watchdog: the process and the pipe's write end."""

    def __init__(self, process: subprocess.Popen[bytes], pipe: IO[bytes]) -> None:
        self.process = process
        self._pipe = pipe
        self._lock = threading.Lock()

    @classmethod
    def start(cls, ledger_dir: Path, *, cgroup_root: Path | None = None, log_format: str = "text") -> Watchdog | None:
        """Start the watchdog for this process; None (logged) when it cannot start.

        ``log_format`` (``logs.format`` at start) is the format of the lines it prints on stderr.
        """
        argv = [
            sys.executable,
            "-m",
            "localagent.agent.processes.watchdog",
            log_format,
            str(ledger_dir),
            str(os.getpid()),
        ]
        if cgroup_root is not None:
            argv.append(str(cgroup_root))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # the same localagent as this agent
        try:
            process = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True, close_fds=True, env=env
            )
        except OSError as exc:
            log.error("cannot start the watchdog (%s): if the agent is killed, its runs go on unsupervised", exc)
            return None
        assert process.stdin is not None
        return cls(process, process.stdin)

    def tell_prefect_key(self, url: str, key: str | None, auth: str) -> None:
        """The key of a Prefect server the agent serves: to report its runs ``Crashed`` if the agent dies.

        A Prefect flow run's engine reports ``Crashed`` itself on the SIGTERM the agent's death sends, but
        not when its stderr is a pipe the dead agent held (it fails on the broken pipe first).
        """
        line = json.dumps({"url": url, "key": key, "auth": auth}) + "\n"
        with self._lock, contextlib.suppress(OSError, ValueError):
            self._pipe.write(line.encode())
            self._pipe.flush()

    def close(self) -> None:
        """The agent is exiting: let the watchdog sweep what is left and exit."""
        with contextlib.suppress(OSError):
            self._pipe.close()


def _report(message: str, log_format: str) -> None:
    if log_format == "json":
        from datetime import datetime, timezone

        from localagent.agent.escape import json_line

        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        line = json_line({"time": now, "level": "WARNING", "logger": "localagent.watchdog", "message": message})
    else:
        line = f"localagent watchdog: {message}"
    with contextlib.suppress(OSError):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _let_them_end(entries: list[LedgerEntry]) -> None:
    """Give runs with a ``term_grace`` (Prefect flow runs) that long to end on SIGTERM before they are killed.

    On Linux the kernel sent it already (their parent-death signal); elsewhere the watchdog sends it. Their
    engine then reports the run ``Crashed`` itself, as Prefect's own rules say, instead of leaving it
    ``Running``. The rest are killed after this, and at once when there is no such run.
    """
    waiting = [entry for entry in entries if entry.ending_on_its_own()]
    if not waiting:
        return
    if not sys.platform.startswith("linux"):
        for entry in waiting:
            with contextlib.suppress(OSError):
                os.kill(entry.pid, signal.SIGTERM)
    began = time.monotonic()
    while waiting:
        time.sleep(0.1)
        waited = time.monotonic() - began
        waiting = [entry for entry in waiting if waited < entry.term_grace and entry.ending_on_its_own()]


def main(argv: list[str]) -> int:
    from localagent.agent.processes.ledger import RunLedger

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the agent, which drains
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    log_format, ledger_dir, agent_pid = argv[0], Path(argv[1]), int(argv[2])
    cgroup_root = Path(argv[3]) if len(argv) > 3 else None
    told = bytearray()
    with contextlib.suppress(OSError):
        while chunk := os.read(0, 65536):  # Prefect keys, one JSON line each; b"" when the agent is gone
            told += chunk
    entries = RunLedger(ledger_dir).of_agent(agent_pid)
    _let_them_end(entries)
    stopped = 0
    for entry in entries:
        count = entry.stop()
        stopped += count
        if count:
            message = (
                f"agent pid {agent_pid} is gone: stopped {count} process(es) of run {entry.run_id} ({entry.label})"
            )
            _report(message, log_format)
    if cgroup_root is not None:
        with contextlib.suppress(OSError):
            cgroup_root.rmdir()
    _report_prefect_runs(entries, bytes(told), log_format)
    return 0


def _report_prefect_runs(entries: list[LedgerEntry], told: bytes, log_format: str) -> None:
    """Prefect flow runs the engine left ``Running``/``Pending``: proposed ``Crashed`` with the agent's key."""
    keys: dict[str, tuple[str | None, str]] = {}
    for line in told.splitlines():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            told_key = json.loads(line)
            keys[told_key["url"]] = (told_key["key"], told_key["auth"])
    prefect = [entry for entry in entries if entry.token.startswith(PREFECT_RUN_PREFIX) and entry.url in keys]
    if not prefect:
        return
    from localagent.prefect.lost_runs import crash_dead_agent_run

    for entry in prefect:
        key, auth = keys[entry.url]
        outcome = crash_dead_agent_run(entry.url, key, auth, entry.run_id)
        if outcome:
            _report(f"Prefect flow run {entry.run_id} ({entry.label}): {outcome}", log_format)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
