"""Run output on the agent's console (``logs.show_flow_logs``): ``[flow-name/run-name] line``.

Usage::

    console = ConsolePrinter(enabled=True)
    follower = ConsoleFollower(spool, console, prefix="[hello/brave-fox] "); follower.start()
    console.enabled = False   # a reload applies at once, to running runs too
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from typing import TextIO

from localagent.agent.background import Background
from localagent.agent.run.spool import LineReader, RunSpool

_BATCH_LINES = 2000
_IDLE_WAIT = 1.0
_MAX_DEFER = 1.0  # while the spool is busy (the child outpaces the agent), print at most this often


class ConsolePrinter:
    """Prints run output lines as ``[flow-name/run-name] line`` to the agent's stdout when enabled.

    Thread-safe; ``enabled`` can be flipped at any time (a reload of logs.show_flow_logs applies at once).
    """

    def __init__(self, enabled: bool = False, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self._stream = stream
        self._lock = threading.Lock()

    def print_lines(self, prefix: str, lines: Sequence[str]) -> None:
        """Print ``lines`` (one write, so lines of concurrent runs never interleave mid-line)."""
        if not lines or not self.enabled:
            return
        text = "".join(f"{prefix}{line}\n" for line in lines)
        stream = self._stream or sys.stdout
        with self._lock:
            try:
                stream.write(text)
                stream.flush()
            except (OSError, ValueError):
                pass  # a closed or broken console must never stop a run


class ConsoleFollower(Background):
    """Follows one run's spool and prints its lines while the console is enabled."""

    def __init__(self, spool: RunSpool, console: ConsolePrinter, *, prefix: str, from_end: bool = False) -> None:
        """``from_end``: start at the output written so far (the console was switched on mid-run)."""
        self._spool = spool
        self._console = console
        self._prefix = prefix
        self._reader = LineReader(spool)
        if from_end:
            self._reader.skip_to_end()
        self._stop = threading.Event()

    def start(self, *, name: str = "console") -> None:
        self._run_in_background(self._follow, name=name)

    def stop(self) -> None:
        self._stop.set()

    def _follow(self) -> None:
        reader = self._reader
        spool = self._spool
        last_printed = time.monotonic()
        while not self._stop.is_set() and not reader.finished:
            if not self._console.enabled:
                reader.skip_to_end()
            else:
                if spool.busy:
                    spool.wait_while_busy(last_printed + _MAX_DEFER)
                lines = reader.read_lines(_BATCH_LINES)
                if lines:
                    self._console.print_lines(self._prefix, [line.text for line in lines])
                    last_printed = time.monotonic()
                    continue
            if self._spool.closed and reader.offset >= self._spool.size:
                if not self._console.enabled or reader.finished:
                    return
                continue
            self._spool.wait_beyond(reader.offset, _IDLE_WAIT)
