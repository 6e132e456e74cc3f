"""A run's output lines as the body of ``POST /api/flow_runs/{id}/logs``, built without a model per line.

Usage::

    body = encode_batch([(0, time.time(), "stdout", "hello")])   # bytes of a ``LogBatch``

The agent's shipper encodes each batch once (every retry sends the same bytes); an orchestrator client that
takes rows (:attr:`~localagent.api.port.Capabilities.output_rows`) but must fall back to HTTP encodes here too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timezone

BatchLine = tuple[int, float, str, str]
"""One numbered line of a batch: ``(seq, epoch seconds, stream, text)``."""

LogRow = tuple[str, int, float, str, str]
"""One line as the store keeps it: ``(run_id, seq, epoch seconds, stream, text)``."""

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode_batch(lines: Iterable[BatchLine], times: dict[float, str] | None = None) -> bytes:
    """The JSON body of a ``LogBatch`` holding ``lines``.

    ``times`` caches the ISO text of read times across calls (lines read together share one).
    """
    cache = {} if times is None else times
    wire: list[dict[str, object]] = []
    append = wire.append
    for seq, when, stream, text in lines:
        iso = cache.get(when)
        if iso is None:
            if len(cache) > 256:
                cache.clear()
            iso = cache[when] = datetime.fromtimestamp(when, timezone.utc).isoformat()
        append({"seq": seq, "time": iso, "stream": stream, "text": text})
    return _encode({"lines": wire}).encode()


def encode_rows(rows: Iterable[LogRow]) -> bytes:
    """:func:`encode_batch` of rows (their run id dropped)."""
    return encode_batch((seq, when, stream, text) for _, seq, when, stream, text in rows)
