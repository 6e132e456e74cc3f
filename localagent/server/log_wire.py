"""Log batches on the wire without a pydantic model per line: the hot path of log shipping.

A batch of 1,000 lines would cost 1,000 ``LogLine`` models on the way in and again on the way out. Here the
raw request body is validated in one pass by a ``TypeAdapter`` over ``TypedDict`` shapes with the same
fields and limits as ``LogBatch`` / ``LogLine`` (the OpenAPI document still names those models), and
turned straight into insert rows; pages are serialised from plain dicts. Usage::

    rows = parse_batch(run_id, await request.body(), nul_free=False)   # RequestValidationError on bad input
    body = render_page(page_lines, next_after=9, finished=True)        # bytes of a LogPage
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from fastapi.exceptions import RequestValidationError
from pydantic import Field, TypeAdapter, ValidationError, with_config
from typing_extensions import NotRequired, TypedDict

from localagent.server.checks import INT64_MAX, bad_request
from localagent.server.database import Database

LogRow = tuple[str, int, float, str, str]
"""``(run_id, seq, epoch seconds, stream, text)``: one row of ``run_logs``, in column order."""

MAX_LINES = 100_000
"""The ``max_length`` of ``LogBatch.lines`` (a test keeps the two in step)."""


@with_config({"extra": "forbid"})
class _LineShape(TypedDict):
    seq: Annotated[int, Field(ge=0)]
    time: Any  # checked by ``_utc_time``: ISO strings the fast way, anything else as pydantic would
    stream: NotRequired[Literal["stdout", "stderr", "system"]]
    text: str


@with_config({"extra": "forbid"})
class _BatchShape(TypedDict):
    lines: Annotated[list[_LineShape], Field(max_length=MAX_LINES)]


class _LineOut(TypedDict):
    seq: int
    time: datetime
    stream: str
    text: str


class _PageOut(TypedDict):
    lines: list[_LineOut]
    next_after: int
    finished: bool


_BATCH = TypeAdapter(_BatchShape)
_DATETIME = TypeAdapter(datetime)
_PAGE = TypeAdapter(_PageOut)
_UTC = timezone.utc


def parse_batch(run_id: str, body: bytes, *, nul_free: bool) -> list[LogRow]:
    """The rows of a ``LogBatch`` body; bad input raises a 422 naming the field, as a model would.

    Times without a zone are UTC. ``nul_free`` replaces NUL characters (PostgreSQL text cannot hold them).
    """
    if not body:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
    try:
        batch = _BATCH.validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        ) from None
    rows: list[LogRow] = []
    append = rows.append
    for index, line in enumerate(batch["lines"]):
        seq = line["seq"]
        if seq > INT64_MAX:
            raise bad_request(f"body.lines.{index}.seq", "integer out of range")
        time = _utc_time(line["time"], index)
        # Two years of margin either side: a zone offset must never carry the UTC time out of range.
        if not 2 <= time.year <= 9998:
            raise bad_request(f"body.lines.{index}.time", "time must be between the years 2 and 9998")
        text = line["text"]
        if nul_free and "\x00" in text:
            text = Database.without_nul(text)
        append((run_id, seq, time.timestamp(), line.get("stream", "stdout"), text))
    return rows


def _utc_time(value: Any, index: int) -> datetime:
    """``value`` as an aware datetime (naive means UTC). ``datetime.fromisoformat`` reads what agents send
    ten times faster than a validator; what it cannot read goes to pydantic, which names the field."""
    time: datetime | None = None
    if type(value) is str:
        with contextlib.suppress(ValueError):  # e.g. a "Z" suffix before Python 3.11, or not a time at all
            time = datetime.fromisoformat(value)
    if time is None:
        try:
            time = _DATETIME.validate_python(value)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**error, "loc": ("body", "lines", index, "time")} for error in exc.errors(include_url=False)]
            ) from None
    return time if time.tzinfo is not None else time.replace(tzinfo=_UTC)


def render_page(rows: Sequence[tuple[Any, ...]], *, next_after: int, finished: bool) -> bytes:
    """A ``LogPage`` as JSON bytes from ``(seq, epoch seconds, stream, text)`` rows."""
    fromtimestamp = datetime.fromtimestamp
    lines: list[_LineOut] = [
        {"seq": seq, "time": fromtimestamp(time, _UTC), "stream": stream, "text": text}
        for seq, time, stream, text in rows
    ]
    return _PAGE.dump_json({"lines": lines, "next_after": next_after, "finished": finished})
