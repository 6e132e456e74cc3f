"""Retrying calls to the orchestrator: when to stop (:class:`GiveUp`); how long to wait between tries is
:class:`localagent.backoff.Backoff`, the one policy of the package (re-exported here).

Usage::

    give_up = GiveUp()
    backoff = Backoff(first=0.5, cap=5.0)
    while not try_once():
        if backoff.wait(give_up):    # slept the next delay, or woke at once because the agent gave up
            break

Every retrying loop of the agent (claims, registration, the state reporter, the state batcher, the log
shipper, leftover spools) uses :class:`Backoff`; the clients of the orchestrator port under them do not
retry (``retries=0``), so retries never nest and a stop cuts every sleep short.
"""

from __future__ import annotations

import threading
import time

from localagent.backoff import Backoff, Interrupt

__all__ = ["Backoff", "GiveUp", "Interrupt"]


class GiveUp:
    """When a run's deliveries stop retrying: at once (:meth:`set`) or at a deadline (:meth:`set_deadline`)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._now = False
        self._deadline: float | None = None

    def set(self) -> None:
        with self._changed:
            self._now = True
            self._changed.notify_all()

    def set_deadline(self, deadline: float) -> None:
        """Give up at ``deadline`` (``time.monotonic()``); an earlier deadline already set is kept."""
        with self._changed:
            if self._deadline is None or deadline < self._deadline:
                self._deadline = deadline
            self._changed.notify_all()

    def is_set(self) -> bool:
        return self._now or (self._deadline is not None and time.monotonic() >= self._deadline)

    def remaining(self) -> float:
        """Seconds until it is time to give up (0 when it is; infinity with no deadline)."""
        if self._now:
            return 0.0
        if self._deadline is None:
            return float("inf")
        return max(self._deadline - time.monotonic(), 0.0)

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep up to ``timeout`` (None: until giving up) unless giving up first; ``True`` when it is time."""
        end = time.monotonic() + (timeout if timeout is not None else float("inf"))
        with self._changed:
            while not self.is_set():
                remaining = end - time.monotonic()
                if self._deadline is not None:
                    remaining = min(remaining, self._deadline - time.monotonic())
                if remaining <= 0:
                    break
                self._changed.wait(remaining if remaining != float("inf") else None)
            return self.is_set()
