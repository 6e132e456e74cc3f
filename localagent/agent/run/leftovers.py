"""Output an earlier agent could not deliver: found at start-up, shipped to its API, then removed.

A run's output waits in ``<state_dir>/spool/<run_id>/`` until the API has it. When the agent stops while the
API is unreachable, or dies mid-run, the spool stays, with a ``meta.json`` naming the run, its API and the seq
of its first line (:class:`~localagent.agent.run.spool.SpoolMeta`). At the next start, before the first claim
(a run claimed again reuses its spool directory and starts it afresh), :meth:`LeftoverSpools.collect` moves
each of them to ``spool/.leftover/<run_id>-<unique>/``; once registered, :meth:`LeftoverSpools.start` ships
them on one thread with the agent's key, numbered from their first seq as before (the API stores a resent seq
once). Delivered, or the run is gone from the API (404): removed. API unreachable, or the agent's key
refused (401/403: a key rotated under a running agent): kept for the next start. A leftover of another API
is kept, and so is a spool without meta (written with ``logs.send_to_api`` off, or by an older localagent).

Usage::

    leftovers = LeftoverSpools(config.agent.state_dir / "spool", metrics=metrics)
    leftovers.collect()                             # at start-up, before the first claim
    leftovers.start(endpoint.api, endpoint.client)  # once registered: ships on a thread of its own
    leftovers.stop(timeout=1.0)                     # on shutdown: what is undelivered stays for the next start
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

from localagent.agent.background import Background
from localagent.agent.retry import GiveUp
from localagent.agent.run.shipper import LogMetrics, LogShipper
from localagent.agent.run.spool import RunSpool, SpoolMeta
from localagent.api.endpoints import same_servers
from localagent.api.port import OutputChannel

log = logging.getLogger("localagent.agent")

LEFTOVER_DIR = ".leftover"


class LeftoverSpools(Background):
    """The spools earlier agents left in ``spool_root``, delivered to the API they belong to."""

    def __init__(self, spool_root: Path, *, metrics: LogMetrics | None = None, initial_backoff: float = 0.5) -> None:
        self._root = spool_root
        self._leftover = spool_root / LEFTOVER_DIR
        self._metrics = metrics
        self._initial_backoff = initial_backoff
        self._give_up = GiveUp()
        self._started = False

    def collect(self) -> int:
        """Move every run's spool with a ``meta.json`` to ``.leftover/``; how many leftovers wait there now.

        Call it before the first claim: no run of this agent has a spool yet.
        """
        try:
            entries = sorted(self._root.iterdir()) if self._root.is_dir() else []
        except OSError as exc:
            log.error("cannot look for output left by an earlier agent in %s: %s", self._root, exc)
            return 0
        without_meta = []
        for directory in entries:
            if directory.name == LEFTOVER_DIR or not directory.is_dir():
                continue
            if not (directory / SpoolMeta.FILE_NAME).is_file():
                without_meta.append(directory.name)
                continue
            try:
                self._leftover.mkdir(exist_ok=True, mode=0o700)
                os.replace(directory, self._leftover / f"{directory.name}-{uuid.uuid4().hex[:12]}")
            except OSError as exc:
                log.error("cannot set aside the output left in %s: %s", directory, exc)
        if without_meta:
            log.warning(
                "%d spool(s) in %s have no %s (written with logs.send_to_api off, or by an older localagent): "
                "their output is not delivered; delete them when no longer needed: %s",
                len(without_meta),
                self._root,
                SpoolMeta.FILE_NAME,
                ", ".join(without_meta),
            )
        return len(self._waiting())

    def start(self, api: str, client: OutputChannel) -> bool:
        """Ship the leftovers of ``api`` (as ``api_name`` names it) through ``client``, an agent-key client.

        Only the first call does anything; with no leftover (or once stopped), no thread is started. True
        when a thread was started (:meth:`join` waits for it).
        """
        if self._started or self._give_up.is_set():
            return False
        self._started = True
        waiting = self._waiting()
        if not waiting:
            return False
        self._run_in_background(self._deliver_all, waiting, api, client, name="localagent-leftovers")
        return True

    def stop(self, timeout: float) -> bool:
        """Stop retrying (what is not delivered stays for the next start); ``True`` once the thread ended."""
        self._give_up.set()
        return self.join(timeout)

    def _waiting(self) -> list[Path]:
        try:
            return sorted(path for path in self._leftover.iterdir() if path.is_dir())
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.error("cannot read the output left by an earlier agent in %s: %s", self._leftover, exc)
            return []

    def _deliver_all(self, waiting: list[Path], api: str, client: OutputChannel) -> None:
        mine: list[tuple[Path, SpoolMeta]] = []
        elsewhere: dict[str, int] = {}
        for directory in waiting:
            try:
                meta = SpoolMeta.read(directory)
            except (OSError, ValueError) as exc:
                log.error("output left in %s cannot be delivered: %s", directory, exc)
                continue
            if meta.api == api or same_servers(meta.api, api):  # one API: the same servers
                mine.append((directory, meta))
            else:
                elsewhere[meta.api] = elsewhere.get(meta.api, 0) + 1
        for other, count in sorted(elsewhere.items()):
            log.warning(
                "%d run(s) left output for the API %s, not the one in force (%s): it is kept in %s until an agent "
                "of that API starts with this state_dir",
                count,
                other,
                api,
                self._leftover,
            )
        for directory, meta in mine:
            if self._give_up.is_set():
                return
            try:
                self._deliver(directory, meta, client)
            except Exception:
                log.exception("delivering the output left in %s failed; it is kept", directory)

    def _deliver(self, directory: Path, meta: SpoolMeta, client: OutputChannel) -> None:
        spool = RunSpool.reopen(directory)
        shipper = LogShipper(
            spool,
            client,
            meta.run_id,
            first_seq=meta.first_seq,
            metrics=self._metrics,
            initial_backoff=self._initial_backoff,
            give_up=self._give_up,
        )
        try:
            shipper.run()
        finally:
            spool.release()
        if shipper.delivered:
            spool.remove()
            log.info(
                "run %s (%s): delivered %d output lines left by an earlier agent",
                meta.run_id,
                meta.label,
                shipper.shipped,
            )
        elif shipper.run_gone:
            spool.remove()
            log.info(
                "run %s (%s): the API no longer knows this run; the output an earlier agent left (%d lines "
                "delivered) is removed",
                meta.run_id,
                meta.label,
                shipper.shipped,
            )
        else:
            log.warning(
                "run %s (%s): output left by an earlier agent not delivered (%d lines shipped); it is kept in %s "
                "for the next start",
                meta.run_id,
                meta.label,
                shipper.shipped,
                directory,
            )
