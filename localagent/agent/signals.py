"""Signals are recorded, never acted on in the handler: the agent's main loop reads them from an inbox.

Usage::

    inbox = SignalInbox()
    with handle_signals(inbox):
        for signum in inbox.wait(timeout=1.0):
            ...  # SIGTERM / SIGINT: drain; SIGHUP: reload

The inbox is a self-pipe, so the waiting thread wakes the moment a signal arrives, and other threads can
wake it too (``notify()``, for example when a run finishes). Tests deliver signals with ``deliver()``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RELOAD_SIGNALS = (signal.SIGHUP,)


class SignalInbox:
    """Signals received and wake-ups requested, for one thread to wait on.

        ``deliver`` only appends to a deque and writes a byte to a pipe, so it is safe in a signal handler.
    ``wait`` is for one thread (the agent's main thread) and must not be called after ``close``.
    """

    def __init__(self) -> None:
        self._pending: deque[signal.Signals] = deque()
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._closed = False
        self._lock = threading.Lock()

    def deliver(self, signum: int) -> None:
        """Record ``signum`` and wake the waiter (safe in a signal handler: it never blocks on the lock)."""
        self._pending.append(signal.Signals(signum))
        if self._lock.acquire(blocking=False):
            try:
                self._poke()
            finally:
                self._lock.release()
        # else: close() holds the lock (nobody waits any more), or a notify() is poking right now.

    def notify(self) -> None:
        """Wake the waiter with no signal (state it watches has changed). Safe after close()."""
        with self._lock:
            self._poke()

    def _poke(self) -> None:
        if self._closed:  # checked under the lock: the fd number may belong to another file after close()
            return
        # A full pipe already holds a wake-up.
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._write_fd, b"\0")

    def wait(self, timeout: float | None) -> list[signal.Signals]:
        """Block until a signal or a wake-up arrives, or ``timeout`` passes; return the signals received since."""
        if not self._pending:
            readable, _, _ = select.select([self._read_fd], [], [], timeout)
            if readable:
                self._drain_pipe()
        else:
            self._drain_pipe()
        received: list[signal.Signals] = []
        while self._pending:
            received.append(self._pending.popleft())
        return received

    def _drain_pipe(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._read_fd, 4096):
                pass

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for fd in (self._read_fd, self._write_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def __enter__(self) -> SignalInbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def handle_signals(
    inbox: SignalInbox, signals: Iterable[signal.Signals] = (*STOP_SIGNALS, *RELOAD_SIGNALS)
) -> Iterator[SignalInbox]:
    """Route ``signals`` to ``inbox`` while the block runs, then restore the previous handlers.

    Handlers can only be installed from the main thread; elsewhere (an agent run inside a test thread)
    this installs nothing and signals reach the inbox only through ``inbox.deliver``.
    """
    if threading.current_thread() is not threading.main_thread():
        yield inbox
        return

    def record(signum: int, frame: FrameType | None) -> None:
        inbox.deliver(signum)

    previous: dict[signal.Signals, object] = {}
    try:
        for signum in signals:
            previous[signum] = signal.signal(signum, record)
        yield inbox
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
