"""handle_signals records signals in the inbox and restores the previous handlers."""

from __future__ import annotations

import os
import signal
import threading

from localagent.agent.signals import SignalInbox, handle_signals


def test_signals_are_recorded_and_old_handlers_restored() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    with SignalInbox() as inbox, handle_signals(inbox):
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGTERM)
        received: list[signal.Signals] = []
        while len(received) < 2:
            received += inbox.wait(timeout=5)
        assert received == [signal.SIGHUP, signal.SIGTERM]
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_notify_wakes_the_waiter_from_another_thread_without_a_signal() -> None:
    with SignalInbox() as inbox:
        threading.Timer(0.05, inbox.notify).start()
        assert inbox.wait(timeout=10) == []
        assert inbox.wait(timeout=0) == []


def test_outside_the_main_thread_nothing_is_installed() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []

    def body() -> None:
        with SignalInbox() as inbox, handle_signals(inbox):
            seen.append(signal.getsignal(signal.SIGTERM))
            inbox.deliver(signal.SIGTERM)
            seen.append(inbox.wait(timeout=1))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join(10)
    assert seen == [before, [signal.SIGTERM]]
