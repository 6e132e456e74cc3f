"""Shipping a run's output to the API in numbered batches, from its on-disk spool.

The shipper follows the run's :class:`~localagent.agent.run.spool.RunSpool` at its own pace, so a slow or
unreachable API never slows the child: output waits on disk. Lines are numbered from the claim's
``next_log_seq`` in spool order; each batch's JSON body is built once, as bytes, straight from the lines
(no model per line), and goes out when it holds ~1 MiB or 5,000 lines, when its oldest line is
``flush_interval`` old, or when the output has ended. While the API is unreachable the same batch is
retried with back-off; the server stores a resent seq once, so a resend after a lost answer is harmless.
While the run writes faster than the agent reads (the spool is *busy*), the shipper holds back, sending
at most one batch per ``max_defer`` seconds, so it does not take the GIL from the pipe reader; what waits
stays on disk and goes out at full speed once the writer slows down or ends.

Usage::

    shipper = LogShipper(spool, api, run_id, first_seq=claimed.next_log_seq, metrics=metrics)
    shipper.start(); ...; shipper.join()   # returns once every line is delivered (or given up)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from localagent.agent.background import Background
from localagent.agent.memory import release_free_memory
from localagent.agent.retry import Backoff, GiveUp
from localagent.agent.run.spool import LineReader, OutputLine, RunSpool
from localagent.api.log_batch import BatchLine, encode_batch
from localagent.errors import ApiNotFound, ApiRejected, ApiUnauthorized, ApiUnavailable

if TYPE_CHECKING:
    from localagent.api.models import LogBatchResult
    from localagent.api.port import OutputChannel

log = logging.getLogger("localagent.run")

MAX_BATCH_BYTES = 1 << 20  # the encoded JSON body of one batch stays under ~1 MiB
MAX_BATCH_LINES = 5_000
FLUSH_INTERVAL = 0.5
MAX_DEFER = 1.0  # while the spool is busy, at most this long between batches
MAX_BACKOFF = 5.0
TRIM_AFTER_BYTES = 1 << 20  # a run that shipped this much hands the freed heap back to the OS at its end
FORCE_TRIM_BYTES = 16 << 20  # ... and past this much, even if another run trimmed a moment ago
_LINE_OVERHEAD = 72  # JSON around one line's text: {"seq":N,"time":"...","stream":"stdout","text":""},


class LogMetrics(Protocol):
    def observe_log_lines(self, *, shipped: int = 0, spooled: int = 0, dropped: int = 0) -> None: ...


class LogShipper(Background):
    """Delivers every line of one run's spool to the API, in order, each seq once."""

    def __init__(
        self,
        spool: RunSpool,
        api: OutputChannel,
        run_id: str,
        *,
        first_seq: int = 0,
        metrics: LogMetrics | None = None,
        flush_interval: float = FLUSH_INTERVAL,
        max_defer: float = MAX_DEFER,
        initial_backoff: float = 0.5,
        give_up: GiveUp | None = None,
    ) -> None:
        self._spool = spool
        self._api = api
        self._run_id = run_id
        self._reader = LineReader(spool)
        self._next_seq = first_seq
        self._metrics = metrics
        self._flush_interval = flush_interval
        self._max_defer = max_defer
        self._initial_backoff = initial_backoff
        self._give_up = give_up or GiveUp()
        self._times: dict[float, str] = {}
        self.shipped = 0
        self.shipped_bytes = 0  # about the JSON size of the batches the API stored
        self.dropped = 0
        self.delivered = False  # every line of the closed spool reached the API
        self.refused = False  # the API refuses this run's output for good (run gone, token revoked)
        self.run_gone = False  # ... because it does not know the run (404)

    def start(self, *, name: str = "log-shipper") -> None:
        """Ship on a thread of its own (:meth:`run` ships on the caller's thread)."""
        self._run_in_background(self.run, name=name)

    def give_up(self) -> None:
        """Stop retrying (the agent is going away); what is not delivered stays in the spool."""
        self._give_up.set()

    def run(self) -> None:
        """Ship until the closed spool is delivered, the API refuses the run's output, or giving up."""
        try:
            self._ship_all()
        except Exception:
            log.exception("shipping the output of run %s failed", self._run_id)
        if self.shipped_bytes >= TRIM_AFTER_BYTES:
            # The batches (and, embedded, the server's parsed rows) are garbage now; a big run always trims.
            release_free_memory(force=self.shipped_bytes >= FORCE_TRIM_BYTES)

    def _ship_all(self) -> None:
        batch: list[BatchLine] = []
        batch_bytes = 0
        batch_started = 0.0
        reader = self._reader
        spool = self._spool
        last_sent = time.monotonic()
        while not self._give_up.is_set():
            if spool.busy:
                spool.wait_while_busy(last_sent + self._max_defer)
            lines = reader.read_lines(MAX_BATCH_LINES - len(batch))
            if lines:
                if not batch:
                    batch_started = time.monotonic()
                batch_bytes += self._extend(batch, lines)
            ended = reader.finished
            age = time.monotonic() - batch_started
            if batch and (
                len(batch) >= MAX_BATCH_LINES or batch_bytes >= MAX_BATCH_BYTES or ended or age >= self._flush_interval
            ):
                if not self._deliver(batch, batch_bytes):
                    return
                batch, batch_bytes = [], 0
                last_sent = time.monotonic()
                continue
            if ended:
                self.delivered = True
                return
            if not lines:
                wait = self._flush_interval - age if batch else 1.0
                self._spool.wait_beyond(reader.offset, wait)

    def _extend(self, batch: list[BatchLine], lines: list[OutputLine]) -> int:
        """Append ``lines`` to ``batch``, numbered; their approximate size as JSON."""
        size = 0
        seq = self._next_seq
        append = batch.append
        for stream, when, text in lines:
            append((seq, when, stream, text))
            seq += 1
            size += len(text) + _LINE_OVERHEAD
        self._next_seq = seq
        return size

    def _sender(self, batch: list[BatchLine]) -> Callable[[], LogBatchResult]:
        """One way to send ``batch``, prepared once for every attempt: rows in-process, else JSON bytes."""
        run_id = self._run_id
        api = self._api
        if api.capabilities.output_rows:  # the embedded API: rows straight to its store, no JSON
            rows = [(run_id, seq, when, stream, text) for seq, when, stream, text in batch]
            return lambda: api.append_log_rows(run_id, rows)
        body = encode_batch(batch, self._times)
        count = len(batch)
        return lambda: self._api.append_logs_raw(run_id, body, count)

    def _deliver(self, batch: list[BatchLine], size: int) -> bool:
        """Send one batch until it is stored; ``False`` when shipping must stop."""
        count = len(batch)
        send = self._sender(batch)
        backoff = Backoff(first=self._initial_backoff, cap=MAX_BACKOFF)
        failed_before = False
        while True:
            try:
                send()
            except (ApiNotFound, ApiUnauthorized) as exc:
                log.error("run %s: the API refuses its output (%s); output is no longer shipped", self._run_id, exc)
                self._count(dropped=count)
                self.refused = True
                self.run_gone = isinstance(exc, ApiNotFound)
                return False
            except (ApiUnavailable, ApiRejected) as exc:
                if isinstance(exc, ApiRejected) and exc.status_code < 500:
                    log.error("run %s: the API rejected %d output lines: %s", self._run_id, count, exc)
                    self._count(dropped=count)
                    return True
                if not failed_before:
                    log.warning("run %s: output waits in the spool, the API is unreachable: %s", self._run_id, exc)
                    self._count(spooled=count)
                    failed_before = True
                if backoff.wait(self._give_up):
                    return False
                continue
            if failed_before:
                log.info("run %s: the API is back, shipping spooled output", self._run_id)
            self.shipped_bytes += size
            self._count(shipped=count)
            return True

    def _count(self, *, shipped: int = 0, spooled: int = 0, dropped: int = 0) -> None:
        self.shipped += shipped
        self.dropped += dropped
        if self._metrics is not None:
            self._metrics.observe_log_lines(shipped=shipped, spooled=spooled, dropped=dropped)
