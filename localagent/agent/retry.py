"""Retrying calls to the orchestrator: when to stop (:class:`GiveUp`) and how long to wait between tries.

Usage::

    give_up = GiveUp()
    if give_up.wait(2.0): ...        # slept 2 s, or woke at once because the agent gave up
"""

from __future__ import annotations

import threading
import time


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

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` unless giving up first; ``True`` when it is time to give up."""
        end = time.monotonic() + timeout
        with self._changed:
            while not self.is_set():
                remaining = end - time.monotonic()
                if self._deadline is not None:
                    remaining = min(remaining, self._deadline - time.monotonic())
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return self.is_set()
