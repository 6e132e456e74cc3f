"""The agent's one retry policy: delays grow to a cap with jitter, and a stop or give-up ends a wait at once."""

from __future__ import annotations

import threading

import pytest

from localagent.agent.retry import Backoff, GiveUp
from tests.support.clock import steady_backoff


def test_delays_double_from_the_first_up_to_the_cap_and_restart_after_a_reset() -> None:
    backoff = steady_backoff(first=0.25, cap=2.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert backoff.attempts == 6
    backoff.reset()
    assert backoff.next_delay() == 0.25


def test_jitter_draws_from_the_upper_half_of_each_delay() -> None:
    draws = iter([0.0, 0.5, 0.999])
    backoff = Backoff(first=1.0, cap=8.0, random=lambda: next(draws))
    assert [backoff.next_delay() for _ in range(3)] == pytest.approx([0.5, 1.5, 3.998])


def test_the_cap_is_read_at_every_try() -> None:
    cap = [4.0]
    backoff = Backoff(first=1.0, cap=lambda: cap[0], random=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(3)] == [1.0, 2.0, 4.0]
    cap[0] = 1.5  # a reload lowered poll_interval
    assert backoff.next_delay() == 1.5


class RecordingStop:
    """An interrupt that records each requested sleep and says stop on the ``stop_on``-th one."""

    def __init__(self, stop_on: int) -> None:
        self.sleeps: list[float] = []
        self.stop_on = stop_on

    def wait(self, timeout: float | None = None) -> bool:
        self.sleeps.append(timeout or 0.0)
        return len(self.sleeps) >= self.stop_on


def test_wait_sleeps_the_next_delay_on_the_interrupt_and_reports_a_stop() -> None:
    backoff = steady_backoff(first=0.5, cap=5.0)
    stop = RecordingStop(stop_on=3)
    assert [backoff.wait(stop) for _ in range(3)] == [False, False, True]
    assert stop.sleeps == [0.5, 1.0, 2.0]


def test_a_set_stop_event_or_give_up_ends_the_wait_without_sleeping_the_delay() -> None:
    stop = threading.Event()
    stop.set()
    assert Backoff(first=3600.0, cap=3600.0).wait(stop) is True  # would hang an hour if it slept
    give_up = GiveUp()
    give_up.set()
    assert Backoff(first=3600.0, cap=3600.0).wait(give_up) is True


def test_a_give_up_from_another_thread_wakes_a_waiting_back_off() -> None:
    give_up = GiveUp()
    threading.Timer(0.1, give_up.set).start()
    assert Backoff(first=3600.0, cap=3600.0).wait(give_up) is True
    assert give_up.remaining() == 0.0
