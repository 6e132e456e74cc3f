"""A run's output on disk: an append-only file of raw output chunks, and the line reader over it.

The pipe reader (:mod:`localagent.agent.run.output`) appends each chunk it reads as one *frame* (stream,
read time, bytes) and does nothing else, so a child writing at full speed is never slowed by line
splitting, decoding, the console or the API. Consumers (the shipper, the console) follow the file at
their own pace with a :class:`LineReader`, which splits lines, splits very long ones and replaces invalid
UTF-8. The file lives in ``<state_dir>/spool/<run_id>/``, so output waiting for an unreachable API costs
disk, not memory. Output meant for the API is described by a :class:`SpoolMeta` (``meta.json``, written
with the directory), so an agent started later can deliver what an earlier one left behind
(:mod:`localagent.agent.run.leftovers`) through :meth:`RunSpool.reopen`.

While the writer is *busy* (each read finds a lot waiting: the child writes as fast as it can), readers
hold back with :meth:`RunSpool.wait_while_busy`: in one process they all share the GIL with the pipe
reader, and every moment it waits for the GIL the child may be blocked on a full pipe. Readers decide how
long they are willing to hold back; the end of the output (the spool is closed) releases them at once.

Usage::

    spool = RunSpool.create(state_dir / "spool" / run_id, meta=SpoolMeta(run_id, "embedded", 0, "flow/run"))
    spool.append(STDOUT, time.time(), b"hello\\n"); spool.close()
    reader = LineReader(spool); reader.read_lines(100)  # [OutputLine("stdout", t, "hello")]
    RunSpool.reopen(spool.directory)  # later, in another agent: the same lines, read-only
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import shutil
import struct
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, NamedTuple

STDOUT, STDERR, SYSTEM = 0, 1, 2
StreamName = Literal["stdout", "stderr", "system"]
STREAM_NAMES: tuple[StreamName, StreamName, StreamName] = ("stdout", "stderr", "system")
MAX_LINE_CHARS = 64 * 1024  # longer lines are split into pieces of this size

BUSY_HOLD = 0.1  # seconds a reader holds back after the writer last found a lot waiting in the pipe

_HEADER = struct.Struct("<BdI")  # stream, read time (epoch seconds), length

SPOOL_FORMAT = 1
"""The format of a spool directory, written in ``meta.json`` as ``format``. 0: a spool written before the
format was recorded (no ``format`` key; the same ``output.frames`` layout as 1). 1: frames of
``_HEADER`` + bytes. An agent reads every format up to its own; a newer one's spool is left alone."""


class OutputLine(NamedTuple):
    stream: StreamName
    time: float
    text: str


@dataclass(frozen=True)
class SpoolMeta:
    """Where a spool's output goes: the run, the API that handed it out, the seq of its first line.

    ``api`` names the API as :func:`~localagent.agent.coordination.session.api_name` does (its url, or ``"embedded"``);
    ``label`` (``flow/run-name``) is for log messages; ``format`` is the spool's :data:`SPOOL_FORMAT`.
    """

    run_id: str
    api: str
    first_seq: int
    label: str
    format: int = SPOOL_FORMAT

    FILE_NAME = "meta.json"

    def write(self, directory: Path) -> None:
        """Write ``meta.json`` in ``directory`` atomically: a reader sees all of it or none."""
        temporary = directory / f".{self.FILE_NAME}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(asdict(self)).encode())
        finally:
            os.close(fd)
        os.replace(temporary, directory / self.FILE_NAME)

    @classmethod
    def read(cls, directory: Path) -> SpoolMeta:
        """The meta of the spool in ``directory``; ``OSError`` or ``ValueError`` if missing or unreadable."""
        data = json.loads((directory / cls.FILE_NAME).read_bytes())
        try:
            spool_format = int(data.get("format", 0))  # no key: written before formats were recorded
            meta = cls(
                str(data["run_id"]), str(data["api"]), int(data["first_seq"]), str(data.get("label", "")), spool_format
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"{directory / cls.FILE_NAME}: not a spool's meta ({exc!r})") from exc
        if spool_format > SPOOL_FORMAT:
            raise ValueError(
                f"{directory / cls.FILE_NAME}: spool format {spool_format} was written by a newer agent "
                f"(this one reads formats up to {SPOOL_FORMAT}); it is left for that agent"
            )
        return meta


class RunSpool:
    """The append-only output file of one run; one writer thread, any number of reader threads."""

    FILE_NAME = "output.frames"

    def __init__(self, directory: Path, meta: SpoolMeta | None = None) -> None:
        self.directory = directory
        self.path = directory / self.FILE_NAME
        self.meta = meta
        self._fd = -1  # the file is made on the first append: a run without output never touches the disk
        self._read_fd = -1
        self._changed = threading.Condition()
        self._size = 0  # a spool left by an earlier attempt of this run is started afresh
        self._closed = False
        self._ended = threading.Event()  # set with _closed: wakes readers holding back for a busy writer
        self._busy_until = 0.0  # time.monotonic() until which the writer counts as busy
        self._created = False

    @classmethod
    def create(cls, directory: Path, meta: SpoolMeta | None = None) -> RunSpool:
        """A spool in ``directory``; the directory and file are created when the first frame is written.

        ``meta`` (output meant for the API) is written next to the file then, so that an agent started
        after this one stopped or died can still deliver what is left.
        """
        return cls(directory, meta)

    @classmethod
    def reopen(cls, directory: Path) -> RunSpool:
        """The spool an earlier agent left in ``directory``, read-only and closed: readers end at its end.

        A last frame cut short (the agent was killed while writing it) is ignored by :class:`LineReader`.
        """
        spool = cls(directory)
        with contextlib.suppress(FileNotFoundError):  # killed between meta.json and the first frame
            spool._read_fd = os.open(spool.path, os.O_RDONLY)
            spool._size = os.fstat(spool._read_fd).st_size
        spool._created = True  # remove() deletes what is on disk
        spool.close()
        return spool

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.meta is not None:  # first, so that no output is on disk without it
            self.meta.write(self.directory)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        try:
            read_fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            os.close(fd)
            raise
        with self._changed:
            self._fd, self._read_fd, self._created = fd, read_fd, True

    @property
    def size(self) -> int:
        return self._size

    @property
    def closed(self) -> bool:
        """No frame will be appended any more (the run's output has ended)."""
        return self._closed

    @property
    def busy(self) -> bool:
        """The writer found a lot waiting in the pipe a moment ago and the output has not ended."""
        return not self._closed and time.monotonic() < self._busy_until

    def mark_busy(self, now: float) -> None:
        """The writer (at ``now``, ``time.monotonic()``) is busy: readers hold back for :data:`BUSY_HOLD`."""
        self._busy_until = now + BUSY_HOLD

    def wait_while_busy(self, deadline: float) -> None:
        """Sleep while the writer is busy, until ``deadline`` (``time.monotonic()``) at the latest.

        Wakes at once when the output ends: its tail is shipped and printed without delay.
        """
        while not self._closed:
            now = time.monotonic()
            until = min(self._busy_until, deadline)
            if now >= until:
                return
            self._ended.wait(until - now)

    def append(self, stream: int, when: float, data: bytes) -> None:
        if self._fd < 0:
            if self._closed:
                raise OSError(f"{self.path}: the spool is closed")
            self._open()
        header = _HEADER.pack(stream, when, len(data))
        written = os.writev(self._fd, [header, data])
        if written != len(header) + len(data):  # a short write to a regular file: disk full or similar
            raise OSError(f"short write to {self.path}: {written} of {len(header) + len(data)} bytes")
        with self._changed:
            self._size += written
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            if not self._closed:
                self._closed = True
                if self._fd >= 0:
                    os.close(self._fd)
            self._changed.notify_all()
        self._ended.set()

    def wait_beyond(self, offset: int, timeout: float | None) -> bool:
        """Wait until the file grows past ``offset`` or is closed; ``True`` if either happened."""
        with self._changed:
            return self._changed.wait_for(lambda: self._size > offset or self._closed, timeout)

    def read_frame(self, offset: int) -> tuple[int, float, bytes, int] | None:
        """The frame at ``offset`` as (stream, time, data, next offset), or ``None`` if not fully written."""
        if offset + _HEADER.size > self._size:
            return None
        stream, when, length = _HEADER.unpack(os.pread(self._read_fd, _HEADER.size, offset))
        end = offset + _HEADER.size + length
        if end > self._size:
            return None
        data = os.pread(self._read_fd, length, offset + _HEADER.size) if length else b""
        return stream, when, data, end

    def release(self) -> None:
        """Close every file descriptor, keeping the file (undelivered output stays on disk)."""
        self.close()
        with self._changed:
            if self._read_fd >= 0:
                os.close(self._read_fd)
                self._read_fd = -1

    def remove(self) -> None:
        """Close and delete the spool file and its directory (once everything in it has been delivered)."""
        self.release()
        if not self._created:
            return  # never written: nothing was made on disk
        for path in (self.path, self.directory / SpoolMeta.FILE_NAME):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        try:
            os.rmdir(self.directory)
        except FileNotFoundError:
            pass
        except OSError:  # something else was put there: remove it all (rare, off the hot path)
            shutil.rmtree(self.directory, ignore_errors=True)


class LineReader:
    """Reads a :class:`RunSpool` as lines, in order, from its start; independent of other readers."""

    def __init__(self, spool: RunSpool) -> None:
        self._spool = spool
        self.offset = 0
        self._pending: deque[OutputLine] = deque()
        self._reset_decoders()

    def _reset_decoders(self) -> None:
        factory = codecs.getincrementaldecoder("utf-8")
        self._decoders = [factory(errors="replace"), factory(errors="replace")]
        self._partial = ["", ""]
        self._partial_time = [0.0, 0.0]

    @property
    def finished(self) -> bool:
        """Every line of a closed spool has been returned."""
        return self._spool.closed and self.offset >= self._spool.size and not self._pending

    def read_lines(self, limit: int) -> list[OutputLine]:
        """Up to ``limit`` lines available now (possibly none); partial lines are held until complete."""
        spool = self._spool
        while len(self._pending) < limit:
            closed = spool.closed  # before the read: once closed, every frame is in ``size``
            frame = spool.read_frame(self.offset)
            if frame is None:
                if closed:
                    # The end. A reopened spool may end in a frame cut short (its agent was killed while
                    # writing it): skip those bytes.
                    self.offset = spool.size
                    self._flush_partials()
                break
            stream, when, data, self.offset = frame
            self._take(stream, when, data)
        count = min(limit, len(self._pending))
        return [self._pending.popleft() for _ in range(count)]

    def skip_to_end(self) -> None:
        """Forget everything written so far (a console that is switched off skips the output it missed)."""
        self.offset = self._spool.size
        self._pending.clear()
        self._reset_decoders()

    def _take(self, stream: int, when: float, data: bytes) -> None:
        if stream == SYSTEM:
            self._flush_partials()
            for text in data.decode("utf-8", "replace").split("\n"):
                self._pending.append(OutputLine("system", when, text))
            return
        text = self._partial[stream] + self._decoders[stream].decode(data)
        pieces = text.split("\n")
        rest = pieces.pop()
        name = STREAM_NAMES[stream]
        first_time = self._partial_time[stream] if self._partial[stream] else when
        append = self._pending.append
        for index, line in enumerate(pieces):
            if line.endswith("\r"):
                line = line[:-1]
            line_time = first_time if index == 0 else when
            if len(line) > MAX_LINE_CHARS:
                for start in range(0, len(line), MAX_LINE_CHARS):
                    append(OutputLine(name, line_time, line[start : start + MAX_LINE_CHARS]))
            else:
                append(OutputLine(name, line_time, line))
        if not pieces:
            when = first_time
        while len(rest) > MAX_LINE_CHARS:
            append(OutputLine(name, when, rest[:MAX_LINE_CHARS]))
            rest = rest[MAX_LINE_CHARS:]
        self._partial[stream] = rest
        self._partial_time[stream] = when

    def _flush_partials(self) -> None:
        for stream in (STDOUT, STDERR):
            text = self._partial[stream] + self._decoders[stream].decode(b"", final=True)
            if text:
                time = self._partial_time[stream] or 0.0
                for start in range(0, len(text), MAX_LINE_CHARS):
                    self._pending.append(OutputLine(STREAM_NAMES[stream], time, text[start : start + MAX_LINE_CHARS]))
            self._partial[stream] = ""
