"""A fake output channel of the orchestrator port: stores lines by seq like the server, fails on demand."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from localagent.api.log_batch import LogRow, encode_rows
from localagent.api.models import LogBatch, LogBatchResult, LogLine
from localagent.api.port import Capabilities
from localagent.errors import ApiRejected, ApiUnavailable


class FlakyLogApi:
    """Stores lines by seq like the server; unreachable while ``down`` is set; can lose one answer."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.lose_next_answer = False
        self.stored: dict[int, LogLine] = {}
        self.calls = 0
        self.failures = 0

    capabilities = Capabilities(output_rows=False)

    def append_log_rows(self, run_id: str, rows: list[LogRow]) -> LogBatchResult:
        return self.append_logs_raw(run_id, encode_rows(rows), len(rows))

    def append_logs_raw(self, run_id: str, body: bytes, count: int) -> LogBatchResult:
        lines = LogBatch.model_validate_json(body).lines
        assert len(lines) == count
        return self.append_logs(run_id, lines)

    def append_logs(self, run_id: str, lines: Sequence[LogLine]) -> LogBatchResult:
        self.calls += 1
        if self.down.is_set():
            self.failures += 1
            raise ApiUnavailable("connection refused")
        new = 0
        for line in lines:
            if line.seq not in self.stored:
                self.stored[line.seq] = line
                new += 1
        if self.lose_next_answer:
            self.lose_next_answer = False
            raise ApiRejected(502, "bad gateway")  # stored, but the agent never heard back
        return LogBatchResult(stored=new, last_seq=max(self.stored))
