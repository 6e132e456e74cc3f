"""Runs a dead agent left behind on this ``state_dir``: stopped before the first claim, reported Crashed.

Normally the dead agent's watchdog (:mod:`localagent.agent.processes.watchdog`) stopped them already; when it was
killed too, the next agent started on the same ``state_dir`` does it from the ledger. Then it reports each
run ``Crashed`` through the orchestrator port, to the API that handed the run out (localagent's API, or the
Prefect server for a Prefect flow run), with the run's own token. The API refuses the report when the run
has ended meanwhile (a final state has no way out) or, for localagent's API, when it has since crashed and
retried the run: the retry has a new token and the old one is refused, so a retry is never touched. A
Prefect server is asked with the agent's key; the worker reads the run's state first and only settles a
run still ``Pending``/``Running`` (:mod:`localagent.prefect.finals`).

Usage::

    orphans = stop_orphans(ledger)                      # at start-up, before the first claim
    threading.Thread(target=report_orphans, args=(ledger, orphans, client_factory)).start()
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from localagent.agent.processes.ledger import LedgerEntry, RunLedger
from localagent.api.models import StateName, StateUpdate
from localagent.errors import ApiError, ApiRejected

if TYPE_CHECKING:
    from localagent.api.port import OrchestratorFactory

log = logging.getLogger("localagent.agent")

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


def report_orphans(
    ledger: RunLedger, orphans: list[LedgerEntry], client_factory: OrchestratorFactory, *, timeout: float = 10.0
) -> None:
    """Report each run ``Crashed`` with its own token; forget it once settled either way.

    An API that cannot be reached keeps the entry for the next start (the API crashes the runs of an agent
    that went silent by itself in the meantime).
    """
    for entry in orphans:
        if not entry.url.startswith(("http://", "https://")) or not entry.token:
            ledger.forget(entry.run_id)
            continue
        client = None
        try:
            client = client_factory(entry.url, entry.token, timeout)
            client.set_state(entry.run_id, StateUpdate(state=StateName.CRASHED, message=CRASH_MESSAGE))
            log.warning("run %s (%s) of an earlier agent reported Crashed", entry.run_id, entry.label)
        except ApiRejected as exc:
            if exc.status_code < 500:
                # Ended meanwhile, handed out again (the token is refused), unknown: settled either way.
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
        finally:
            if client is not None:
                client.close()


def _ids(entry: LedgerEntry) -> tuple[str, str]:
    return entry.run_id, entry.label
