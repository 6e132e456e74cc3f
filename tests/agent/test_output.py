"""The output pump and line reader: lines, long lines, invalid UTF-8, stream tags, the head/tail cut."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path

from localagent.agent.run.output import OutputPump, split_budget
from localagent.agent.run.spool import MAX_LINE_CHARS, LineReader, OutputLine, RunSpool


def pump_bytes(
    tmp_path: Path, stdout: Iterable[bytes], stderr: Iterable[bytes] = (), *, max_output: int = 0, chunk: int = 1 << 20
) -> tuple[list[OutputLine], OutputPump]:
    """Write ``stdout``/``stderr`` pieces into real pipes, pump them, and read every line back."""
    spool = RunSpool.create(tmp_path / "spool")
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pump = OutputPump(spool, max_output=max_output, chunk_size=chunk)
    pump.start(out_r, err_r)

    def write(fd: int, pieces: Iterable[bytes]) -> None:
        for piece in pieces:
            os.write(fd, piece)
        os.close(fd)

    writers = [
        threading.Thread(target=write, args=(out_w, stdout)),
        threading.Thread(target=write, args=(err_w, stderr)),
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert pump.join(30)
    os.close(out_r)
    os.close(err_r)
    reader = LineReader(spool)
    lines: list[OutputLine] = []
    while not reader.finished:
        lines.extend(reader.read_lines(1000))
    return lines, pump


def test_lines_are_split_and_tagged(tmp_path: Path) -> None:
    lines, _ = pump_bytes(tmp_path, [b"one\ntw", b"o\r\nthree"], [b"oops\n"])
    stdout = [line.text for line in lines if line.stream == "stdout"]
    stderr = [line.text for line in lines if line.stream == "stderr"]
    assert stdout == ["one", "two", "three"]  # a last line without newline is kept; CRLF ends a line
    assert stderr == ["oops"]
    assert all(line.time > 0 for line in lines)


def test_very_long_lines_are_split(tmp_path: Path) -> None:
    long_line = b"x" * (MAX_LINE_CHARS * 2 + 10)
    lines, _ = pump_bytes(tmp_path, [long_line + b"\nafter\n"], chunk=4096)
    assert [len(line.text) for line in lines] == [MAX_LINE_CHARS, MAX_LINE_CHARS, 10, 5]
    assert lines[-1].text == "after"


def test_invalid_utf8_is_replaced_and_split_characters_survive(tmp_path: Path) -> None:
    data = "héllo wörld ✓\n".encode() + b"bad \xff\xfe bytes\n"
    lines, _ = pump_bytes(tmp_path, [data[i : i + 1] for i in range(len(data))], chunk=3)
    assert [line.text for line in lines] == ["héllo wörld ✓", "bad \ufffd\ufffd bytes"]


def test_output_past_the_cap_keeps_head_and_tail_with_a_marker(tmp_path: Path) -> None:
    total = 20_000
    payload = [f"line {i:05d}\n".encode() for i in range(total)]  # 11 bytes each
    lines, pump = pump_bytes(
        tmp_path, [b"".join(payload[i : i + 100]) for i in range(0, total, 100)], max_output=4000, chunk=512
    )
    markers = [line for line in lines if line.stream == "system"]
    assert len(markers) == 1
    found = re.search(r"output cut: ([\d,]+) bytes \(([\d,]+) lines\) omitted", markers[0].text)
    assert found is not None
    cut_bytes, cut_lines = (int(group.replace(",", "")) for group in found.groups())
    kept = [line.text for line in lines if line.stream == "stdout"]
    head_end = lines.index(markers[0])
    head, tail = kept[:head_end], kept[head_end:]
    assert head == [f"line {i:05d}" for i in range(len(head))]
    assert tail == [f"line {i:05d}" for i in range(total - len(tail), total)]
    assert len(head) + cut_lines + len(tail) == total
    assert cut_bytes == total * 11 - (len(head) + len(tail)) * 11
    assert pump.cut_lines == cut_lines and pump.total_bytes == total * 11
    head_budget, tail_budget = split_budget(4000)
    assert len(head) * 11 <= head_budget and len(tail) * 11 <= tail_budget + 512


def test_output_under_the_cap_is_kept_whole(tmp_path: Path) -> None:
    payload = [f"line {i}\n".encode() for i in range(300)]
    lines, pump = pump_bytes(tmp_path, payload, max_output=1 << 20)
    assert [line.text for line in lines] == [f"line {i}" for i in range(300)]
    assert pump.cut_bytes == 0
