"""Runs an earlier agent of the same name on this host lost (it died): marked Crashed when the next registers.

Usage::

    crash_lost_runs(rest, pool="local", worker="host-1")    # once per agent process, at registration

A Prefect flow run's process gets SIGTERM when its agent dies (its engine then reports ``Crashed`` itself,
see ``docs/prefect3.md``); when it could not (it was killed outright, or it is not a Prefect engine), the
run would stay ``Running`` for ever: the next agent started here finds it by its labels (this worker, this
host) and, if its process is gone, proposes ``Crashed``.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from localagent.errors import ApiError
from localagent.prefect.claims import HOST_LABEL
from localagent.prefect.rest import PrefectRest, state_body

logger = logging.getLogger("localagent.prefect")

_SWEPT: set[tuple[str, str, str]] = set()


def crash_lost_runs(rest: PrefectRest, pool: str, worker: str) -> None:
    """Once per (server, pool, worker) in this process: later registrations would see our own live runs."""
    sweep_key = (rest.url, pool, worker)
    if sweep_key in _SWEPT:
        return
    host = socket.gethostname()
    for run in rest.active_flow_runs(pool):
        labels = run.get("labels") or {}
        if labels.get("prefect.worker.name") != worker or labels.get(HOST_LABEL) != host:
            continue
        run_id = str(run["id"])
        pid = str(run.get("infrastructure_pid") or "")
        if pid.isdigit() and alive(int(pid)):
            continue  # still running somewhere on this host (not a child of ours): leave it be
        where = f"process {pid}" if pid else "its process had not started"
        message = f"The localagent worker {worker!r} on {host} stopped without reporting this run's end ({where})."
        logger.warning("flow run %s: %s Marking it Crashed.", run_id, message)
        try:
            rest.set_state(run_id, state_body(run_id, "CRASHED", "Crashed", message))
        except ApiError as exc:
            logger.error("flow run %s: could not mark it Crashed: %s", run_id, exc)
    _SWEPT.add(sweep_key)  # only once the runs were read: a server that was down is swept at the next try


def crash_dead_agent_run(url: str, key: str | None, auth: str, run_id: str) -> str:
    """For the watchdog of a dead agent: propose ``Crashed`` for a run still ``Pending``/``Running``.

    What happened, for the watchdog's log ("" when the engine had reported its end itself).
    """
    rest = PrefectRest(url, key=key, timeout=10.0, auth=auth)
    try:
        state = (rest.read_flow_run(run_id).get("state") or {}).get("type")
        if state not in ("PENDING", "RUNNING"):
            return ""
        message = "The localagent worker running this flow run died; its process was stopped."
        rest.set_state(run_id, state_body(run_id, "CRASHED", "Crashed", message))
        return "marked Crashed"
    except ApiError as exc:
        return f"could not be marked Crashed: {exc}"
    finally:
        rest.close()


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan whose new parent has not reaped it yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]
