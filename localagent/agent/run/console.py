"""Run output on the agent's console (``logs.show_flow_logs``): ``[flow-name/run-name] line``.

The run controls this text, so it is escaped (:func:`~localagent.agent.escape.escape_control`): no escape
sequence, carriage return or C1 control reaches the terminal, and no run can print a line that looks like
the agent's own log. With ``logs.format = "json"`` each line is instead one JSON object on the agent's log
stream (stderr), like every other line the agent prints: ``{"time", "level", "logger", "run_id", "flow",
"run", "stream", "text"}``.

Usage::

    console = ConsolePrinter(enabled=True)
    follower = ConsoleFollower(spool, console, prefix="[hello/brave-fox] ", source=RunSource(...))
    follower.start()
    console.enabled = False   # a reload applies at once, to running runs too
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TextIO

from localagent.agent import logs
from localagent.agent.background import Background
from localagent.agent.escape import escape_control, json_line
from localagent.agent.run.spool import LineReader, OutputLine, RunSpool

_BATCH_LINES = 2000
_IDLE_WAIT = 1.0
_MAX_DEFER = 1.0  # while the spool is busy (the child outpaces the agent), print at most this often


OUTPUT_LOGGER = "localagent.run.output"


@dataclass(frozen=True)
class RunSource:
    """The run whose output is printed (for the JSON format's fields)."""

    run_id: str
    flow: str
    run: str


class ConsolePrinter:
    """Prints run output lines as ``[flow-name/run-name] line`` to the agent's stdout when enabled.

    Thread-safe; ``enabled`` can be flipped at any time (a reload of logs.show_flow_logs applies at once).
    ``log_format`` ``None`` follows the agent's log (``logs.format``, reloaded at once too).
    """

    def __init__(self, enabled: bool = False, stream: TextIO | None = None, log_format: str | None = None) -> None:
        self.enabled = enabled
        self.log_format = log_format
        self._stream = stream
        self._lock = threading.Lock()

    def print_lines(self, prefix: str, lines: Sequence[str]) -> None:
        """Print ``lines`` (one write, so lines of concurrent runs never interleave mid-line)."""
        if lines and self.enabled:
            self._write("".join(f"{prefix}{escape_control(line)}\n" for line in lines), self._stream or sys.stdout)

    def print_output(self, prefix: str, source: RunSource | None, lines: Sequence[OutputLine]) -> None:
        """Print a run's ``lines``: ``prefix`` + escaped text, or one JSON object each in JSON format."""
        if not lines or not self.enabled:
            return
        if (self.log_format or logs.current_format()) != "json" or source is None:
            self.print_lines(prefix, [line.text for line in lines])
            return
        text = "".join(
            json_line(
                {
                    "time": datetime.fromtimestamp(line.time, tz=timezone.utc).isoformat(timespec="milliseconds"),
                    "level": "INFO",
                    "logger": OUTPUT_LOGGER,
                    "run_id": source.run_id,
                    "flow": source.flow,
                    "run": source.run,
                    "stream": line.stream,
                    "text": line.text,
                }
            )
            + "\n"
            for line in lines
        )
        if self._stream is not None:
            self._write(text, self._stream)
        elif not logs.write_log_lines(text):  # same stream and lock as the agent's own JSON lines
            self._write(text, sys.stderr)

    def _write(self, text: str, stream: TextIO) -> None:
        with self._lock:
            try:
                stream.write(text)
                stream.flush()
            except (OSError, ValueError):
                pass  # a closed or broken console must never stop a run


class ConsoleFollower(Background):
    """Follows one run's spool and prints its lines while the console is enabled."""

    def __init__(
        self,
        spool: RunSpool,
        console: ConsolePrinter,
        *,
        prefix: str,
        from_end: bool = False,
        source: RunSource | None = None,
    ) -> None:
        """``from_end``: start at the output written so far (the console was switched on mid-run)."""
        self._spool = spool
        self._console = console
        self._prefix = prefix
        self._source = source
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
                    self._console.print_output(self._prefix, self._source, lines)
                    last_printed = time.monotonic()
                    continue
            if self._spool.closed and reader.offset >= self._spool.size:
                if not self._console.enabled or reader.finished:
                    return
                continue
            self._spool.wait_beyond(reader.offset, _IDLE_WAIT)
