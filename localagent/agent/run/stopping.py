"""A run's stop and timeout state machine, as a pure function of the time.

Usage::

    watch = StopWatch.started(now=clock(), timeout=flow.timeout)
    watch, step = next_step(watch, clock(), exited=False, request=stop, policy=StopPolicy("SIGTERM", 30.0))
    if step.send: proc.signal_group(step.send)     # the caller acts; next look in step.next_look seconds

A run is stopped on request (a cancel, a shutdown) or when its flow's timeout passes: first
``runs.stop_signal`` to its process group, then SIGKILL once ``runs.stop_grace`` has passed (at once for an
immediate stop, a second Ctrl-C). Once the process has exited, its pipes are read on for ``drain`` seconds
(a process that left the group may hold them), then let go. :func:`next_step` decides; it sends nothing,
reads no clock and keeps no state, so tests step the time instead of sleeping
(``tests/agent/test_stopping.py``).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, replace

from localagent.config.units import format_duration


@dataclass(frozen=True)
class StopRequest:
    kind: str  # "cancel", "shutdown", "timeout" or "api_lost" (runs.on_api_lost = "stop")
    message: str
    immediate: bool = False


@dataclass(frozen=True)
class StopPolicy:
    stop_signal: str  # a signal name, e.g. "SIGTERM"
    stop_grace: float
    drain: float = 5.0  # after the process exited, how long its pipes are read on


@dataclass(frozen=True)
class StopWatch:
    """What is known about stopping one run's process."""

    timeout_at: float | None
    timeout: float = 0.0
    signalled_at: float | None = None
    killed: bool = False
    drain_until: float | None = None
    abandoned: bool = False

    @classmethod
    def started(cls, *, now: float, timeout: float | None) -> StopWatch:
        return cls(timeout_at=now + timeout if timeout else None, timeout=timeout or 0.0)

    @property
    def stopped_by_us(self) -> bool:
        return self.signalled_at is not None or self.killed


@dataclass(frozen=True)
class Step:
    """What the caller does now, and when it looks again (``None``: only when woken)."""

    next_look: float | None
    send: signal.Signals | None = None
    timed_out: StopRequest | None = None  # the timeout passed: the run's stop request from now on
    abandon_output: bool = False


def next_step(
    watch: StopWatch, now: float, *, exited: bool, request: StopRequest | None, policy: StopPolicy
) -> tuple[StopWatch, Step]:
    """The state after looking at the run at ``now``, and what to do."""
    if exited:
        drain_until = watch.drain_until if watch.drain_until is not None else now + policy.drain
        if now < drain_until:
            return replace(watch, drain_until=drain_until), Step(next_look=drain_until - now)
        abandon = not watch.abandoned
        return replace(watch, drain_until=drain_until, abandoned=True), Step(next_look=0.0, abandon_output=abandon)
    timed_out = None
    if request is None and watch.timeout_at is not None and now >= watch.timeout_at:
        request = timed_out = StopRequest("timeout", f"timed out after {format_duration(watch.timeout)}")
    if request is None:
        next_look = max(watch.timeout_at - now, 0.0) if watch.timeout_at is not None else None
        return watch, Step(next_look=next_look)
    send = None
    if not watch.killed:
        grace_over = watch.signalled_at is not None and now >= watch.signalled_at + policy.stop_grace
        if request.immediate or grace_over:
            send, watch = signal.SIGKILL, replace(watch, killed=True)
        elif watch.signalled_at is None:
            send, watch = signal.Signals[policy.stop_signal], replace(watch, signalled_at=now)
    if watch.signalled_at is not None and not watch.killed:
        next_look = max(watch.signalled_at + policy.stop_grace - now, 0.0)
    else:
        next_look = 1.0
    return watch, Step(next_look=next_look, send=send, timed_out=timed_out)
