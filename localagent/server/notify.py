"""In-process wake-ups for long-polls: a claim or a log follower sleeps until something it cares about changes.

Producers run in worker threads (sync endpoints, the sweep); waiters are coroutines on the event loop.
A waiter subscribes *before* it checks the database, so a change between the check and the wait is never
missed::

    with notifier.subscribe(RUNS) as wakeup:
        if not check():
            await wakeup.wait(timeout=1.0)

Several server processes on one PostgreSQL database share their notifications through it
(:mod:`localagent.server.pg_wakeups`): ``forward`` sends each local notification to the other processes, and
``cross_process`` says whether their notifications reach this one right now (else long-polls re-check the
database now and then).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

RUNS = "runs"
"""Topic for anything that can make work claimable or a cancel pending (created, cancelled, retried, ...)."""


def agent_topic(agent_id: str) -> str:
    """Topic for an agent's own news: a heartbeat that changed its labels (its waiting claims re-check)."""
    return f"agent:{agent_id}"


def logs_topic(run_id: str) -> str:
    """Topic for a run's new log lines and its reaching a final state."""
    return f"logs:{run_id}"


class Wakeup:
    """One subscription: set when its topic is notified (or the notifier closes)."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def fire(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self, timeout: float) -> bool:
        """True when woken, False after ``timeout`` seconds. The wakeup re-arms itself."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        self._event.clear()
        return True


class Notifier:
    """Topic -> subscribers. ``notify`` is thread-safe and cheap when nobody listens."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, set[Wakeup]] = {}
        self._closed = False
        self._forward: Callable[[tuple[str, ...]], None] | None = None
        self._cross_process = False

    @property
    def cross_process(self) -> bool:
        """True while changes made by other server processes are notified here too (PostgreSQL LISTEN)."""
        return self._cross_process

    def set_cross_process(self, live: bool) -> None:
        self._cross_process = live

    def forward_to(self, forward: Callable[[tuple[str, ...]], None] | None) -> None:
        """Also hand every ``notify`` to ``forward`` (which publishes it to the other server processes)."""
        self._forward = forward

    @property
    def closed(self) -> bool:
        """True once the server is shutting down: long-polls should answer at once."""
        return self._closed

    @contextmanager
    def subscribe(self, *topics: str) -> Iterator[Wakeup]:
        wakeup = Wakeup()
        with self._lock:
            for topic in topics:
                self._subscribers.setdefault(topic, set()).add(wakeup)
            if self._closed:
                wakeup.fire()
        try:
            yield wakeup
        finally:
            with self._lock:
                for topic in topics:
                    waiting = self._subscribers.get(topic)
                    if waiting is not None:
                        waiting.discard(wakeup)
                        if not waiting:
                            del self._subscribers[topic]

    def notify(self, *topics: str) -> None:
        """Wake this process's waiters on ``topics`` and tell the other server processes."""
        self.notify_local(*topics)
        forward = self._forward
        if forward is not None and topics:
            forward(topics)

    def notify_local(self, *topics: str) -> None:
        """Wake this process's waiters on ``topics`` only (a notification that came from another process)."""
        with self._lock:
            woken = [w for topic in topics for w in self._subscribers.get(topic, ())]
        for wakeup in woken:
            wakeup.fire()

    def waiting(self, topic: str) -> int:
        """How many subscriptions wait on ``topic`` now (for tests and diagnostics)."""
        with self._lock:
            return len(self._subscribers.get(topic, ()))

    def wake_all(self) -> None:
        """Wake every waiter (to re-check after a time in which other processes' changes may have been missed)."""
        with self._lock:
            woken = [w for waiting in self._subscribers.values() for w in waiting]
        for wakeup in woken:
            wakeup.fire()

    def close(self) -> None:
        """Wake every waiter and make later waits return at once (server shutdown)."""
        with self._lock:
            self._closed = True
            woken = [w for waiting in self._subscribers.values() for w in waiting]
        for wakeup in woken:
            wakeup.fire()
