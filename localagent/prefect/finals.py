"""What the worker adds to a flow run's states when its process ends, and its output sent to Prefect's logs.

Usage::

    report_end(rest, run_id, update, tail)        # after the process ended (or could not start)
    forward_output(rest, run_id, lines)           # prefect.forward_output: raw lines as the run's logs

The engine reports ``Running`` and the final state itself; the worker only settles what it left open:

- a cancel (from Prefect, a drain, a deleted run): ``CANCELLED``, forced, unless the run ended otherwise;
- a process that ended while the run was still ``PENDING``/``RUNNING`` (killed, crashed, not an engine, could
  not start): ``CRASHED`` proposed with the exit code or signal and the last lines of output.

The current state is read first every time, so a report retried after the server went away (its answer lost
on the way) finds its own earlier write and adds nothing: no state is ever reported twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from localagent.api.models import StateName
from localagent.prefect.rest import FINAL_TYPES, state_body

if TYPE_CHECKING:
    from localagent.api.models import StateUpdate
    from localagent.prefect.rest import PrefectRest

logger = logging.getLogger("localagent.prefect")

_LEVELS = {"stdout": 20, "stderr": 40, "system": 30}


def report_end(rest: PrefectRest, run_id: str, update: StateUpdate, tail: Iterable[str]) -> None:
    """Settle the run's state after its process ended (ApiNotFound: the run was deleted in Prefect)."""
    current = ((rest.read_flow_run(run_id).get("state")) or {}).get("type")
    if update.state == StateName.CANCELLED or current == "CANCELLING":
        if current in ("COMPLETED", "FAILED", "CANCELLED"):
            return
        message = "Flow run was cancelled successfully." if current == "CANCELLING" else update.message
        rest.set_state(run_id, state_body(run_id, "CANCELLED", "Cancelled", message), force=True)
        return
    if current in FINAL_TYPES or current not in ("PENDING", "RUNNING"):
        return  # the engine reported its end (or paused / rescheduled the run): nothing to add
    logger.warning("flow run %s ended without a final state: marking it Crashed (%s)", run_id, update.message)
    rest.set_state(run_id, state_body(run_id, "CRASHED", "Crashed", crash_message(update, tail)))


def crash_message(update: StateUpdate, tail: Iterable[str]) -> str:
    message = f"Flow run process ended before the flow run reached a final state: {update.message}"
    lines = "\n".join(tail)
    if lines:
        message += f"\nLast output lines:\n{lines[-4000:]}"
    return message


def forward_output(rest: PrefectRest, run_id: str, lines: Sequence[tuple[int, str, str, str]]) -> None:
    """``(seq, ISO time, stream, text)`` lines as the run's Prefect logs (logger ``localagent.output``)."""
    logs = [
        {
            "name": "localagent.output",
            "level": _LEVELS.get(stream, 20),
            "message": text,
            "timestamp": when,
            "flow_run_id": run_id,
            "task_run_id": None,
        }
        for _, when, stream, text in lines
    ]
    if logs:
        rest.create_logs(logs)
