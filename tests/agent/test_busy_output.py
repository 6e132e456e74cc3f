"""Readers hold back while the pipe reader is busy, with a bounded delay, and the tail arrives at once."""

from __future__ import annotations

import fcntl
import io
import os
import time
from pathlib import Path

from localagent.agent.run.console import ConsoleFollower, ConsolePrinter
from localagent.agent.run.output import BUSY_READ, OutputPump
from localagent.agent.run.shipper import LogShipper
from localagent.agent.run.spool import STDOUT, RunSpool
from tests.support.log_sink import FlakyLogApi

FOREVER = 3600.0
F_SETPIPE_SZ = 1031


class RecordingSpool(RunSpool):
    """A real spool that also records when the pump marked it busy."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.busy_marks = 0

    def mark_busy(self, now: float) -> None:
        self.busy_marks += 1
        super().mark_busy(now)


def pump_pipe(spool: RunSpool, pieces: list[bytes]) -> OutputPump:
    """Write ``pieces`` into a real 1 MiB pipe before the pump starts reading, then pump it to the end."""
    read_fd, write_fd = os.pipe()
    fcntl.fcntl(write_fd, F_SETPIPE_SZ, 1 << 20)
    assert sum(map(len, pieces)) < 1 << 20  # it all fits: writing never waits for the reader
    for piece in pieces:
        os.write(write_fd, piece)
    os.close(write_fd)
    pump = OutputPump(spool, max_output=0)
    pump.start(read_fd, None)
    assert pump.join(30)
    os.close(read_fd)
    return pump


def test_a_full_pipe_marks_the_spool_busy_and_a_trickle_does_not(tmp_path: Path) -> None:
    bulk = RecordingSpool(tmp_path / "bulk")
    pump_pipe(bulk, [b"x" * 99 + b"\n"] * (2 * BUSY_READ // 100))  # already in the pipe: one big read
    assert bulk.busy_marks >= 1
    assert not bulk.busy  # the output ended: nobody holds back for it any more

    trickle = RecordingSpool(tmp_path / "trickle")
    pump_pipe(trickle, [b"one line\n"] * 20)
    assert trickle.busy_marks == 0
    assert trickle.size > 0


def test_the_shipper_still_ships_while_the_writer_never_slows_down(tmp_path: Path) -> None:
    spool = RunSpool.create(tmp_path / "spool")
    api = FlakyLogApi()
    shipper = LogShipper(spool, api, "run-1", flush_interval=0.01, max_defer=0.05)
    shipper.start()
    for i in range(200):
        spool.mark_busy(time.monotonic() + FOREVER)  # as busy as a writer can be, and still writing
        spool.append(STDOUT, time.time(), f"line {i}\n".encode())
    deadline = time.monotonic() + 30
    while len(api.stored) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [api.stored[seq].text for seq in sorted(api.stored)] == [f"line {i}" for i in range(200)]
    assert spool.busy and not spool.closed  # delivered with bounded delay, not only after the end
    spool.close()
    assert shipper.join(30) and shipper.delivered


def test_the_tail_is_shipped_as_soon_as_a_busy_output_ends(tmp_path: Path) -> None:
    spool = RunSpool.create(tmp_path / "spool")
    api = FlakyLogApi()
    shipper = LogShipper(spool, api, "run-2", max_defer=FOREVER)  # holds back for as long as it is busy
    spool.mark_busy(time.monotonic() + FOREVER)
    shipper.start()
    for i in range(1000):
        spool.append(STDOUT, time.time(), f"line {i}\n".encode())
    spool.close()  # the end of the output releases the shipper, however busy the writer was
    assert shipper.join(30)
    assert shipper.delivered
    assert [api.stored[seq].text for seq in sorted(api.stored)] == [f"line {i}" for i in range(1000)]


def test_the_console_prints_everything_once_a_busy_output_ends(tmp_path: Path) -> None:
    spool = RunSpool.create(tmp_path / "spool")
    out = io.StringIO()
    follower = ConsoleFollower(spool, ConsolePrinter(enabled=True, stream=out), prefix="[f/r] ")
    spool.mark_busy(time.monotonic() + FOREVER)
    follower.start()
    for i in range(500):
        spool.append(STDOUT, time.time(), f"line {i}\n".encode())
    spool.close()
    assert follower.join(30)
    assert out.getvalue().splitlines() == [f"[f/r] line {i}" for i in range(500)]
