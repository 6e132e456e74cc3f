"""Runs a dead agent left behind on this ``state_dir``: stopped before the first claim, reported Crashed.

Normally the dead agent's watchdog (:mod:`localagent.agent.processes.watchdog`) stopped them already; when it was
killed too, the next agent started on the same ``state_dir`` does it from the ledger. Then, for each run
the API still shows active (``Submitted``, ``Running``, ``Cancelling``), it reports ``Crashed`` with the
run's own token. That token belongs to the dead agent's claim of the run: when the API has since crashed
and retried the run, the retry has a new token and the old one is refused, so a retry is never touched.

Usage::

    orphans = stop_orphans(ledger)                      # at start-up, before the first claim
    threading.Thread(target=report_orphans, args=(ledger, orphans)).start()
"""

from __future__ import annotations

import logging

from localagent.agent.processes.ledger import LedgerEntry, RunLedger
from localagent.api.client import ApiClient
from localagent.api.models import StateName, StateUpdate
from localagent.errors import ApiError, ApiRejected

log = logging.getLogger("localagent.agent")

ACTIVE = frozenset({StateName.SUBMITTED, StateName.RUNNING, StateName.CANCELLING, StateName.UNKNOWN})
CRASH_MESSAGE = "the agent running it died; the next agent on its state_dir stopped what was left of it"


def stop_orphans(ledger: RunLedger) -> list[LedgerEntry]:
    """Stop every process of runs whose agent is gone; those runs, to be reported."""
    orphans = ledger.orphaned()
    for entry in orphans:
        count = entry.stop()
        if count:
            log.warning(
                "run %s (%s) of an earlier agent (pid %d) was still running unsupervised: stopped %d process(es)",
                entry.run_id,
                entry.label,
                entry.agent_pid,
                count,
            )
        else:
            log.info(
                "run %s (%s) of an earlier agent (pid %d): nothing left running",
                entry.run_id,
                entry.label,
                entry.agent_pid,
            )
    return orphans


def report_orphans(ledger: RunLedger, orphans: list[LedgerEntry], *, timeout: float = 10.0) -> None:
    """Report each still active run ``Crashed`` with its own token; forget it once settled either way.

    An API that cannot be reached keeps the entry for the next start (the API crashes the runs of an agent
    that went silent by itself in the meantime).
    """
    for entry in orphans:
        if not entry.url.startswith(("http://", "https://")) or not entry.token:
            ledger.forget(entry.run_id)
            continue
        try:
            with ApiClient(entry.url, key=entry.token, timeout=timeout, retries=2) as client:
                run = client.get_run(entry.run_id)
                if run.state in ACTIVE:
                    client.set_state(entry.run_id, StateUpdate(state=StateName.CRASHED, message=CRASH_MESSAGE))
                    log.warning("run %s (%s) of an earlier agent reported Crashed", entry.run_id, entry.label)
        except ApiRejected as exc:
            if exc.status_code < 500:
                # A refused token (the run was handed out again), an unknown run, a refused state: settled.
                log.info("run %s (%s) of an earlier agent: not reported (%s)", entry.run_id, entry.label, exc)
                ledger.forget(entry.run_id)
                continue
            log.warning(
                "run %s (%s) of an earlier agent: not reported (%s); retried at the next start", *_ids(entry), exc
            )
        except ApiError as exc:
            log.warning(
                "run %s (%s) of an earlier agent: not reported (%s); retried at the next start", *_ids(entry), exc
            )
        else:
            ledger.forget(entry.run_id)


def _ids(entry: LedgerEntry) -> tuple[str, str]:
    return entry.run_id, entry.label
