"""The package's one retry policy: exponential back-off with jitter, cut short by a stop.

Usage::

    backoff = Backoff(first=0.5, cap=5.0)
    while not try_once():
        if backoff.wait(stop_event):     # slept the next delay, or woke at once because of the stop
            break

Used by every retrying loop of the agent (:mod:`localagent.agent.retry`) and by the HTTP client's own
retries (the CLI's commands; the agent's clients are made with ``retries=0``, so retries never nest). One
small class rather than a library such as tenacity: what matters here is the interruptible sleep on the
agent's own stop events, which tenacity would need a custom ``sleep`` and ``stop`` for, at the cost of a
runtime dependency.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from typing import Protocol


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
