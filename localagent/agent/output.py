"""Reading a run's stdout and stderr pipes without ever blocking the child.

One thread per run reads both pipes in large chunks and appends each chunk to the run's
:class:`~localagent.agent.spool.RunSpool` and does no per-line work, so the child runs at the speed it
would writing to a file. Past ``logs.max_run_output`` the head is kept, the middle is only counted and
the tail is kept in memory (bounded); at the end a marker line saying how much was cut is written
between them.

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

from localagent.agent.spool import STDERR, STDOUT, SYSTEM, RunSpool
from localagent.config.units import format_size

log = logging.getLogger("localagent.run")

READ_CHUNK = 1 << 20
MAX_TAIL = 8 << 20  # the tail kept past max_run_output is at most this (and at most half the cap)
_BUSY_READ = 8 << 10
_BATCH_PAUSE = 0.001
_F_SETPIPE_SZ = 1031  # Linux: a bigger pipe lets the child write more before it has to wait for us


def split_budget(max_output: int) -> tuple[int, int]:
    """(head, tail) bytes kept for a cap of ``max_output``; 0 means no cap."""
    if max_output <= 0:
        return 0, 0
    tail = min(max_output // 2, MAX_TAIL)
    return max_output - tail, tail


class OutputPump:
    """Copies a run's two output pipes into its spool, applying the head/tail cut."""

    def __init__(self, spool: RunSpool, *, max_output: int, chunk_size: int = READ_CHUNK) -> None:
        self._spool = spool
        self._max_output = max_output
        self._head_budget, self._tail_budget = split_budget(max_output)
        self._chunk_size = chunk_size
        self._head_used = 0
        self._cutting = False
        self._tail: deque[tuple[int, float, bytes]] = deque()
        self._tail_bytes = 0
        self.total_bytes = 0
        self.cut_bytes = 0
        self.cut_lines = 0
        self.failed = False
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()

    def start(self, stdout_fd: int | None, stderr_fd: int | None, *, name: str = "output") -> None:
        fds = {fd: stream for fd, stream in ((stdout_fd, STDOUT), (stderr_fd, STDERR)) if fd is not None}
        for fd in fds:
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, _F_SETPIPE_SZ, READ_CHUNK)
        self._thread = threading.Thread(target=self._pump, args=(fds,), name=name, daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for end of file on both pipes; ``True`` when the pump has finished."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def abandon(self) -> None:
        """Stop reading now (e.g. a daemonized grandchild keeps a pipe open after the run ended)."""
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _pump(self, fds: dict[int, int]) -> None:
        selector = selectors.DefaultSelector()
        try:
            for fd, stream in fds.items():
                selector.register(fd, selectors.EVENT_READ, stream)
            selector.register(self._wake_r, selectors.EVENT_READ, None)
            open_fds = len(fds)
            while open_fds:
                for key, _ in selector.select():
                    if key.data is None:
                        open_fds = 0
                        break
                    data = os.read(key.fd, self._chunk_size)
                    if len(data) >= _BUSY_READ:
                        # A fast writer: let its pipe fill a little so we read big chunks, not 4 KiB at a
                        # time (the pipe holds up to READ_CHUNK, so the writer does not block meanwhile).
                        time.sleep(_BATCH_PAUSE)
                    if data and not self.failed:
                        try:
                            self._take(key.data, data)
                        except OSError as exc:
                            # Keep draining the pipes so the child never blocks; its output is lost.
                            log.error("cannot write run output to %s: %s", self._spool.path, exc)
                            self.failed = True
                    else:
                        selector.unregister(key.fd)
                        open_fds -= 1
            if not self.failed:
                self._finish()
        except OSError as exc:
            log.error("cannot write run output to %s: %s", self._spool.path, exc)
            self.failed = True
        finally:
            selector.close()
            self._spool.close()
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

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
