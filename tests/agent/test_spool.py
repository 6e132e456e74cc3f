"""The spool on disk, reopened by a later agent; the shipper delivers every line once, in order, through an API
outage and a lost answer."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from localagent.agent.run.shipper import LogShipper
from localagent.agent.run.spool import STDERR, STDOUT, LineReader, RunSpool, SpoolMeta
from tests.support.log_sink import FlakyLogApi


class Counts:
    def __init__(self) -> None:
        self.shipped = self.spooled = self.dropped = 0

    def observe_log_lines(self, *, shipped: int = 0, spooled: int = 0, dropped: int = 0) -> None:
        self.shipped += shipped
        self.spooled += spooled
        self.dropped += dropped


def test_lines_written_while_the_api_is_down_all_arrive_once_in_order(tmp_path: Path) -> None:
    spool = RunSpool.create(tmp_path / "spool" / "run-1")
    api = FlakyLogApi()
    counts = Counts()
    shipper = LogShipper(spool, api, "run-1", first_seq=5, metrics=counts, flush_interval=0.05, initial_backoff=0.05)
    shipper.start()
    for i in range(100):
        spool.append(STDOUT, time.time(), f"before {i}\n".encode())
    api.down.set()
    for i in range(3000):
        spool.append(STDERR if i % 3 == 0 else STDOUT, time.time(), f"during {i}\n".encode())
    deadline = time.monotonic() + 30
    while api.failures < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    api.lose_next_answer = True
    api.down.clear()
    for i in range(100):
        spool.append(STDOUT, time.time(), f"after {i}\n".encode())
    spool.close()
    assert shipper.join(30)
    assert shipper.delivered
    expected = [f"before {i}" for i in range(100)] + [f"during {i}" for i in range(3000)]
    expected += [f"after {i}" for i in range(100)]
    assert sorted(api.stored) == list(range(5, 5 + len(expected)))
    assert [api.stored[seq].text for seq in sorted(api.stored)] == expected
    assert api.stored[5 + 100].stream == "stderr" and api.stored[5 + 101].stream == "stdout"
    assert api.failures >= 3
    assert counts.spooled > 0
    assert counts.shipped == len(expected)


def test_spool_lives_on_disk_until_removed(tmp_path: Path) -> None:
    directory = tmp_path / "spool" / "run-2"
    spool = RunSpool.create(directory)
    spool.append(STDOUT, time.time(), b"kept on disk\n")
    spool.close()
    assert (directory / RunSpool.FILE_NAME).stat().st_size > len(b"kept on disk\n")
    reader = LineReader(spool)
    assert [line.text for line in reader.read_lines(10)] == ["kept on disk"]
    assert reader.finished
    spool.remove()
    assert not directory.exists()


def test_nothing_is_left_pending_when_the_shipper_gives_up(tmp_path: Path) -> None:
    spool = RunSpool.create(tmp_path / "spool" / "run-3")
    api = FlakyLogApi()
    api.down.set()
    shipper = LogShipper(spool, api, "run-3", flush_interval=0.01, initial_backoff=0.01)
    shipper.start()
    spool.append(STDOUT, time.time(), b"never delivered\n")
    spool.close()
    while api.failures < 2:
        time.sleep(0.01)
    shipper.give_up()
    assert shipper.join(10)
    assert not shipper.delivered
    assert api.stored == {}


def write_closed_spool(directory: Path, lines: list[str], meta: SpoolMeta | None = None) -> None:
    """Lines on both streams, one frame each, and a partial last line, as a run that ended leaves them."""
    spool = RunSpool.create(directory, meta)
    for index, text in enumerate(lines):
        spool.append(STDERR if index % 4 == 3 else STDOUT, 1_700_000_000.0 + index, f"{text}\n".encode())
    spool.append(STDOUT, 1_700_000_100.0, b"no line end")
    spool.release()


def test_a_reopened_spool_reads_every_line_then_ends(tmp_path: Path) -> None:
    directory = tmp_path / "spool" / "run-4"
    meta = SpoolMeta("run-4", "http://api.example:4200", 7, "hello/brave-fox")
    write_closed_spool(directory, [f"line {i}" for i in range(1000)], meta)
    assert SpoolMeta.read(directory) == meta
    spool = RunSpool.reopen(directory)
    assert spool.closed
    reader = LineReader(spool)
    lines = reader.read_lines(5000)
    assert [line.text for line in lines] == [f"line {i}" for i in range(1000)] + ["no line end"]
    assert [line.stream for line in lines[:4]] == ["stdout", "stdout", "stdout", "stderr"]
    assert lines[2].time == 1_700_000_002.0
    assert reader.finished
    with pytest.raises(OSError, match="closed"):
        spool.append(STDOUT, time.time(), b"more\n")
    spool.remove()
    assert not directory.exists()


@pytest.mark.parametrize("cut", [1, 5, 13, 14, 20])
def test_a_last_frame_cut_short_is_ignored(tmp_path: Path, cut: int) -> None:
    """The agent was killed while writing its last frame (header and data are 13 + 7 bytes)."""
    directory = tmp_path / "spool" / "run-5"
    spool = RunSpool.create(directory)
    for i in range(3):
        spool.append(STDOUT, time.time(), f"line {i}\n".encode())
    spool.append(STDOUT, time.time(), b"cut me\n")
    spool.release()
    path = directory / RunSpool.FILE_NAME
    os.truncate(path, path.stat().st_size - cut)
    reopened = RunSpool.reopen(directory)
    reader = LineReader(reopened)
    assert [line.text for line in reader.read_lines(100)] == ["line 0", "line 1", "line 2"]
    assert reader.finished
    assert reader.read_lines(100) == []
    reopened.release()


def test_a_spool_left_before_its_first_frame_reopens_empty(tmp_path: Path) -> None:
    directory = tmp_path / "spool" / "run-6"
    directory.mkdir(parents=True)
    SpoolMeta("run-6", "embedded", 0, "hello/brave-fox").write(directory)
    spool = RunSpool.reopen(directory)
    reader = LineReader(spool)
    assert reader.read_lines(10) == []
    assert reader.finished
    spool.remove()
    assert not directory.exists()
