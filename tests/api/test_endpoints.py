"""Endpoints alone: the order of URLs per request, one switch logged once, failback probes paced by the clock."""

from __future__ import annotations

import logging
import threading

import pytest

from localagent.api.endpoints import Endpoints
from tests.support.wait import wait_for

A, B, C = "http://a:1", "http://b:1", "http://c:1"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_each_request_tries_the_url_in_use_then_the_next_ones_once() -> None:
    endpoints = Endpoints((A, B, C), probe=lambda url, timeout: False)
    assert endpoints.order() == [A, B, C]
    endpoints.answered(C, [(A, "connection refused"), (B, "connection refused")])
    assert endpoints.current == C
    assert endpoints.order()[0] == C and sorted(endpoints.order()) == [A, B, C]


def test_two_requests_making_the_same_switch_log_and_count_it_once(caplog: pytest.LogCaptureFixture) -> None:
    switches: list[str] = []
    endpoints = Endpoints((A, B), probe=lambda url, timeout: False, on_switch=switches.append)
    caplog.set_level(logging.WARNING, logger="localagent.api")
    endpoints.answered(B, [(A, "connection reset by the server")])
    endpoints.answered(B, [(A, "connection reset by the server")])
    endpoints.answered(A, [])  # a request A answered before it went down: no switch back
    assert endpoints.current == B and switches == ["failover"]
    assert [r.getMessage() for r in caplog.records] == [
        f"API {A} unreachable (connection reset by the server); using {B}"
    ]


def test_the_first_url_is_probed_at_most_once_per_interval_and_used_again_when_it_answers() -> None:
    clock = Clock()
    probes: list[str] = []
    healthy = threading.Event()

    def probe(url: str, timeout: float) -> bool:
        probes.append(url)
        return healthy.is_set()

    switches: list[str] = []
    endpoints = Endpoints((A, B), failback_interval=30.0, probe=probe, clock=clock, on_switch=switches.append)
    endpoints.answered(B, [(A, "connection refused")])
    endpoints.order()  # within the interval after the switch: no probe
    assert probes == []
    clock.now += 30.0
    endpoints.order()
    wait_for(lambda: len(probes) == 1, what="the first probe")
    wait_for(lambda: not endpoints._probing, what="the probe to end")
    endpoints.order()  # the next one waits another interval
    assert len(probes) == 1 and endpoints.current == B
    healthy.set()
    clock.now += 30.0
    endpoints.order()
    wait_for(lambda: endpoints.current == A, what="failback")
    assert probes == [A, A] and switches == ["failover", "failback"]


def test_a_single_url_is_never_probed() -> None:
    endpoints = Endpoints((A,), probe=lambda url, timeout: pytest.fail("probed"))
    assert endpoints.order() == [A]


def test_an_empty_list_is_refused() -> None:
    with pytest.raises(ValueError):
        Endpoints(())
    with pytest.raises(ValueError):
        Endpoints((A,)).replace(())
