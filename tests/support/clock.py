"""Injectable time: a clock tests step by hand, and a back-off whose jitter is fixed."""

from __future__ import annotations

from localagent.backoff import Backoff


class FakeClock:
    """``clock = FakeClock(100.0); clock.advance(2.5); clock() == 102.5``"""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def steady_backoff(first: float, cap: float) -> Backoff:
    """A :class:`Backoff` whose jitter always draws the top of its range: delays double exactly."""
    return Backoff(first=first, cap=cap, random=lambda: 1.0)
