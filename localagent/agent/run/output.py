"""Reading a run's stdout and stderr pipes without ever blocking the child.

One thread per run reads both pipes in large chunks, each until it is empty (never sleeping between
reads), appends each chunk to the run's :class:`~localagent.agent.spool.RunSpool` and does no per-line
work, so the child runs at the speed it would writing to a file. Past ``logs.max_run_output`` the head
is kept, the middle is only counted and the tail is kept in memory (bounded); at the end a marker line
saying how much was cut is written between them. The run's own thread may call :meth:`OutputPump.run`
with a ``tick`` to watch its process between reads, so one thread serves both.

A read that finds a lot in the pipe (:data:`BUSY_READ`) means the child writes faster than we read: the
pump marks the spool busy (:meth:`~localagent.agent.spool.RunSpool.mark_busy`) so its readers (shipper,
console) hold back and leave the GIL to it, instead of making it wait while the child blocks on a full pipe.

Usage::

    pump = OutputPump(spool, max_output=64 << 20)
    pump.start(proc.stdout_fd, proc.stderr_fd)
    pump.join()      # both pipes reached end of file; the spool is closed
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import selectors
import threading
import time
from collections import deque
from collections.abc import Callable

from localagent.agent.background import Background
from localagent.agent.run.spool import STDERR, STDOUT, SYSTEM, RunSpool
from localagent.config.units import format_size

log = logging.getLogger("localagent.run")

READ_CHUNK = 1 << 20
MAX_TAIL = 8 << 20  # the tail kept past max_run_output is at most this (and at most half the cap)
_MAX_READS = 16
BUSY_READ = 64 << 10  # a read this big: the writer outpaces us (a line-at-a-time writer leaves far less)
_F_SETPIPE_SZ = 1031  # Linux: a bigger pipe lets the child write more before it has to wait for us


def split_budget(max_output: int) -> tuple[int, int]:
    """(head, tail) bytes kept for a cap of ``max_output``; 0 means no cap."""
    if max_output <= 0:
        return 0, 0
    tail = min(max_output // 2, MAX_TAIL)
    return max_output - tail, tail


class OutputPump(Background):
    """Copies a run's two output pipes into its spool, applying the head/tail cut."""

    def __init__(
        self,
        spool: RunSpool,
        *,
        max_output: int,
        chunk_size: int = READ_CHUNK,
        on_data: Callable[[], None] | None = None,
    ) -> None:
        self._spool = spool
        self._max_output = max_output
        self._head_budget, self._tail_budget = split_budget(max_output)
        self._chunk_size = chunk_size
        self._on_data = on_data
        self._head_used = 0
        self._cutting = False
        self._tail: deque[tuple[int, float, bytes]] = deque()
        self._tail_bytes = 0
        self.total_bytes = 0
        self.cut_bytes = 0
        self.cut_lines = 0
        self.failed = False
        self._abandoned = False
        self._wake_lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    def start(self, stdout_fd: int | None, stderr_fd: int | None, *, name: str = "output") -> None:
        """Pump on a thread of its own (:meth:`run` pumps on the caller's thread)."""
        self._run_in_background(self.run, stdout_fd, stderr_fd, name=name)

    def abandon(self) -> None:
        """Stop reading now (e.g. a daemonized grandchild keeps a pipe open after the run ended)."""
        self._abandoned = True
        self.wake()

    def wake(self) -> None:
        """Make :meth:`run` call its ``tick`` now (something it watches changed)."""
        with self._wake_lock, contextlib.suppress(OSError):  # a full wake pipe already holds a wake-up
            if self._wake_w >= 0:  # never write to a closed (and maybe reused) descriptor
                os.write(self._wake_w, b"x")

    def run(
        self, stdout_fd: int | None, stderr_fd: int | None, *, tick: Callable[[], float | None] | None = None
    ) -> None:
        """Read both pipes to end of file (or :meth:`abandon`); the spool is closed at the end.

        ``tick`` is called after every wake-up and whenever the time it returned (seconds, ``None``: no
        limit) has passed; a caller uses it to watch the process from this same thread.
        """
        fds = {fd: stream for fd, stream in ((stdout_fd, STDOUT), (stderr_fd, STDERR)) if fd is not None}
        for fd in fds:
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, _F_SETPIPE_SZ, READ_CHUNK)
            os.set_blocking(fd, False)
        selector = selectors.DefaultSelector()
        try:
            for fd, stream in fds.items():
                selector.register(fd, selectors.EVENT_READ, stream)
            selector.register(self._wake_r, selectors.EVENT_READ, None)
            open_fds = len(fds)
            timeout = tick() if tick is not None else None
            while open_fds and not self._abandoned:
                for key, _ in selector.select(timeout):
                    if key.data is None:
                        with contextlib.suppress(OSError):
                            os.read(self._wake_r, 4096)
                    elif not self._drain(key.fd, key.data):
                        selector.unregister(key.fd)
                        open_fds -= 1
                if tick is not None:
                    timeout = tick()
            if not self.failed:
                self._finish()
        except OSError as exc:
            log.error("cannot write run output to %s: %s", self._spool.path, exc)
            self.failed = True
        finally:
            selector.close()
            self._spool.close()
            with self._wake_lock:
                for fd in (self._wake_r, self._wake_w):
                    with contextlib.suppress(OSError):
                        os.close(fd)
                self._wake_r = self._wake_w = -1

    def _drain(self, fd: int, stream: int) -> bool:
        """Read ``fd`` until it is empty (``True``) or at end of file (``False``).

        At most ``_MAX_READS`` chunks in a row, so a fast writer on one pipe cannot starve the other or ``tick``.
        """
        got = False
        for _ in range(_MAX_READS):
            try:
                data = os.read(fd, self._chunk_size)
            except BlockingIOError:
                break
            if not data:
                if got and self._on_data is not None:
                    self._on_data()
                return False
            got = True
            if len(data) >= BUSY_READ:
                self._spool.mark_busy(time.monotonic())
            if not self.failed:
                try:
                    self._take(stream, data)
                except OSError as exc:
                    # Keep draining the pipes so the child never blocks; its output is lost.
                    log.error("cannot write run output to %s: %s", self._spool.path, exc)
                    self.failed = True
        if got and self._on_data is not None:
            self._on_data()
        return True

    def _take(self, stream: int, data: bytes) -> None:
        now = time.time()
        self.total_bytes += len(data)
        if not self._cutting:
            if not self._head_budget or self._head_used + len(data) <= self._head_budget:
                self._head_used += len(data)
                self._spool.append(stream, now, data)
                return
            # The head ends at the last line end that fits (or mid-line when no line end fits).
            room = self._head_budget - self._head_used
            cut = data.rfind(b"\n", 0, room) + 1 or room
            if cut:
                self._head_used += cut
                self._spool.append(stream, now, data[:cut])
            data = data[cut:]
            self._cutting = True
            if not data:
                return
        self._tail.append((stream, now, data))
        self._tail_bytes += len(data)
        # Drop whole chunks from the front while the rest still covers the tail budget: the middle is
        # only counted, never split or decoded.
        while len(self._tail) > 1 and self._tail_bytes - len(self._tail[0][2]) >= self._tail_budget:
            _, _, dropped = self._tail.popleft()
            self._tail_bytes -= len(dropped)
            self.cut_bytes += len(dropped)
            self.cut_lines += dropped.count(b"\n")

    def _finish(self) -> None:
        if self.cut_bytes:
            stream, when, first = self._tail.popleft()
            start = first.find(b"\n") + 1  # the tail starts at a line start
            self.cut_bytes += start
            self.cut_lines += 1 if start else 0
            if first[start:]:
                self._tail.appendleft((stream, when, first[start:]))
            head, tail = split_budget(self._max_output)
            marker = (
                f"[localagent] output cut: {self.cut_bytes:,} bytes ({self.cut_lines:,} lines) omitted here; "
                f"logs.max_run_output = {format_size(self._max_output)} keeps the first {format_size(head)} "
                f"and the last {format_size(tail)}"
            )
            self._spool.append(SYSTEM, time.time(), marker.encode())
        while self._tail:
            stream, when, data = self._tail.popleft()
            self._spool.append(stream, when, data)
        self._tail_bytes = 0
