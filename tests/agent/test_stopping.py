"""The stop/timeout state machine of a run, stepped through time without sleeping."""

from __future__ import annotations

import signal

from localagent.agent.run.stopping import StopPolicy, StopRequest, StopWatch, next_step

POLICY = StopPolicy("SIGTERM", stop_grace=30.0, drain=5.0)
CANCEL = StopRequest("cancel", "cancelled on request")


def test_a_run_without_timeout_or_request_is_only_looked_at_when_woken() -> None:
    watch = StopWatch.started(now=100.0, timeout=None)
    watch, step = next_step(watch, 1_000_000.0, exited=False, request=None, policy=POLICY)
    assert (step.send, step.next_look, step.timed_out) == (None, None, None)


def test_a_cancel_sends_the_stop_signal_then_sigkill_once_the_grace_is_over() -> None:
    watch = StopWatch.started(now=0.0, timeout=None)
    watch, step = next_step(watch, 10.0, exited=False, request=CANCEL, policy=POLICY)
    assert (step.send, step.next_look) == (signal.SIGTERM, 30.0)
    watch, step = next_step(watch, 39.9, exited=False, request=CANCEL, policy=POLICY)
    assert step.send is None  # still within the grace: nothing sent twice
    assert step.next_look is not None and 0 < step.next_look <= 0.1 + 1e-9
    watch, step = next_step(watch, 40.0, exited=False, request=CANCEL, policy=POLICY)
    assert step.send == signal.SIGKILL
    assert watch.killed and watch.stopped_by_us
    watch, step = next_step(watch, 41.0, exited=False, request=CANCEL, policy=POLICY)
    assert (step.send, step.next_look) == (None, 1.0)  # killed once; looks on until the reaper sees the exit


def test_an_immediate_stop_kills_at_once() -> None:
    watch = StopWatch.started(now=0.0, timeout=None)
    _watch, step = next_step(
        watch, 1.0, exited=False, request=StopRequest("shutdown", "bye", immediate=True), policy=POLICY
    )
    assert step.send == signal.SIGKILL


def test_the_flow_timeout_becomes_a_stop_request_at_its_deadline() -> None:
    watch = StopWatch.started(now=50.0, timeout=60.0)
    watch, step = next_step(watch, 80.0, exited=False, request=None, policy=POLICY)
    assert (step.send, step.next_look, step.timed_out) == (None, 30.0, None)
    watch, step = next_step(watch, 110.0, exited=False, request=None, policy=POLICY)
    assert step.timed_out == StopRequest("timeout", "timed out after 1m")
    assert step.send == signal.SIGTERM
    watch, step = next_step(watch, 140.0, exited=False, request=step.timed_out, policy=POLICY)
    assert step.send == signal.SIGKILL


def test_the_stop_signal_is_the_configured_one() -> None:
    watch = StopWatch.started(now=0.0, timeout=None)
    _watch, step = next_step(watch, 0.0, exited=False, request=CANCEL, policy=StopPolicy("SIGINT", 5.0))
    assert step.send == signal.SIGINT


def test_after_the_exit_output_is_read_on_for_the_drain_then_let_go_once() -> None:
    watch = StopWatch.started(now=0.0, timeout=None)
    watch, step = next_step(watch, 10.0, exited=True, request=None, policy=POLICY)
    assert (step.next_look, step.abandon_output) == (5.0, False)
    watch, step = next_step(watch, 15.0, exited=True, request=None, policy=POLICY)
    assert step.abandon_output
    watch, step = next_step(watch, 16.0, exited=True, request=None, policy=POLICY)
    assert not step.abandon_output  # let go once
