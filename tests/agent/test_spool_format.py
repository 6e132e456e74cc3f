"""The spool's format version: written in meta.json; a spool of an older agent is read, a newer one's is left."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from localagent.agent.run.spool import SPOOL_FORMAT, STDOUT, LineReader, RunSpool, SpoolMeta


def test_meta_json_carries_the_format(tmp_path: Path) -> None:
    spool = RunSpool.create(tmp_path / "run-1", meta=SpoolMeta("run-1", "embedded", 0, "job/run"))
    spool.append(STDOUT, time.time(), b"hello\n")
    spool.close()
    assert json.loads((tmp_path / "run-1" / "meta.json").read_text())["format"] == SPOOL_FORMAT == 1


def test_a_spool_written_before_formats_were_recorded_is_read(tmp_path: Path) -> None:
    spool = RunSpool.create(tmp_path / "old", meta=SpoolMeta("run-7", "http://api:4300", 12, "job/old"))
    spool.append(STDOUT, time.time(), b"one\ntwo\n")
    spool.close()
    # Exactly what an agent of the previous release wrote: no "format" key.
    (tmp_path / "old" / "meta.json").write_text(
        '{"run_id": "run-7", "api": "http://api:4300", "first_seq": 12, "label": "job/old"}'
    )
    meta = SpoolMeta.read(tmp_path / "old")
    assert (meta.run_id, meta.api, meta.first_seq, meta.format) == ("run-7", "http://api:4300", 12, 0)
    reader = LineReader(RunSpool.reopen(tmp_path / "old"))
    assert [line.text for line in reader.read_lines(10)] == ["one", "two"]


def test_a_spool_of_a_newer_agent_is_refused_naming_its_format(tmp_path: Path) -> None:
    directory = tmp_path / "new"
    directory.mkdir()
    (directory / "meta.json").write_text(
        json.dumps({"run_id": "r", "api": "embedded", "first_seq": 0, "label": "", "format": SPOOL_FORMAT + 1})
    )
    with pytest.raises(ValueError, match=f"spool format {SPOOL_FORMAT + 1} was written by a newer agent"):
        SpoolMeta.read(directory)
