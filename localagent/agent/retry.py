"""Retrying calls to the orchestrator: when to stop (:class:`GiveUp`) and how long to wait between tries.

Usage::

    give_up = GiveUp()
    backoff = Backoff(first=0.5, cap=5.0)
    while not try_once():
        if backoff.wait(give_up):    # slept the next delay, or woke at once because the agent gave up
            break

Every retrying loop of the agent (claims, registration, the state reporter, the state batcher, the log
shipper, leftover spools) uses :class:`Backoff`; the clients of the orchestrator port under them do not
retry (``retries=0``), so retries never nest and a stop cuts every sleep short. One small class rather than
a library such as tenacity: what matters here is the interruptible sleep on the agent's own stop events,
which tenacity would need a custom ``sleep`` and ``stop`` for, at the cost of a runtime dependency.
"""

from __future__ import annotations

import random as _random
import threading
import time
from collections.abc import Callable
from typing import Protocol


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


class Interrupt(Protocol):
    """What ends a back-off's sleep at once: a ``threading.Event`` (a stop) or a :class:`GiveUp`.

    ``wait(timeout)`` sleeps up to ``timeout`` seconds and is true once it is time to stop.
    """

    def wait(self, timeout: float | None = None) -> bool: ...


class Backoff:
    """The agent's one retry policy: exponential back-off with jitter, cut short by a stop or give-up.

    ``backoff = Backoff(first=0.5, cap=5.0); while not sent(): if backoff.wait(give_up): break``

    The nominal delay starts at ``first`` and doubles up to ``cap`` (a number, or a callable read at every
    try, e.g. the ``poll_interval`` in force); each sleep is drawn uniformly from the upper half of it
    ("equal jitter"), so agents that lost the API together do not come back in lock step, yet the delay
    still grows. :meth:`reset` after a success. ``random`` is injectable so tests see exact delays.
    Not thread-safe: one instance per retrying loop.
    """

    def __init__(
        self,
        *,
        first: float,
        cap: float | Callable[[], float],
        random: Callable[[], float] = _random.random,
    ) -> None:
        self._first = max(0.0, first)
        self._cap = cap
        self._random = random
        self._nominal = 0.0
        self.attempts = 0  # failures since the last success

    def reset(self) -> None:
        self._nominal = 0.0
        self.attempts = 0

    def next_delay(self) -> float:
        """The next sleep (and advance the policy)."""
        cap = self._cap() if callable(self._cap) else self._cap
        self._nominal = min(max(self._nominal * 2, self._first), max(cap, 0.0))
        self.attempts += 1
        return self._nominal * (0.5 + 0.5 * self._random())

    def wait(self, interrupt: Interrupt) -> bool:
        """Sleep the next delay unless ``interrupt`` comes first; true when it is time to stop."""
        return interrupt.wait(self.next_delay())
