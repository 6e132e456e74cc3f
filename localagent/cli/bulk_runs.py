"""``localagent flow run NAME --count N`` / ``--params-file runs.jsonl``: many runs in few requests.

Runs go to ``POST /api/flow_runs/bulk`` in requests of at most ``BULK_CREATE_MAX`` runs; each request is
one transaction, so a bad run refuses its whole request. The file is read and checked before anything is
sent, and an error the server reports for ``body.runs.<i>`` is given back as the file's line. Usage::

    parameters = read_params_file(Path("runs.jsonl"))          # [(line number, {...}), ...]
    created = create_in_bulk(client, requests, lines=[n for n, _ in parameters], source="runs.jsonl")
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from localagent.errors import ApiRejected

if TYPE_CHECKING:
    from localagent.api.client import ApiClient
    from localagent.api.models import CreatedRun, FlowRunCreate

_ITEM = re.compile(r"^body\.runs\.(\d+)(.*)$", re.DOTALL)
COUNT_MAX = 1_000_000
"""The most runs one ``--count`` may ask for."""


def read_params_file(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number, parameters)`` for each non-blank line of a JSON Lines file (each line a JSON object).

    A usage error (exit 2) naming the file and line when a line is not a JSON object or the file is
    unreadable or empty.
    """
    hint = "--params-file"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise typer.BadParameter(f"cannot read {path}: {reason}", param_hint=hint) from None
    runs: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise typer.BadParameter(f"{path} line {number}: not JSON ({exc})", param_hint=hint) from None
        if not isinstance(value, dict):
            raise typer.BadParameter(
                f"{path} line {number}: each line must be a JSON object of parameters, not {type(value).__name__}",
                param_hint=hint,
            )
        runs.append((number, value))
    if not runs:
        raise typer.BadParameter(f"{path} has no runs (one JSON object a line)", param_hint=hint)
    return runs


def create_in_bulk(
    client: ApiClient, requests: Sequence[FlowRunCreate], *, lines: Sequence[int] | None = None, source: str = ""
) -> list[CreatedRun]:
    """Create ``requests`` in requests of at most ``BULK_CREATE_MAX``; returns the runs in order.

    When the server refuses an item of a request, the error names the item's position among all runs (or,
    with ``lines``, its line in ``source``) and says how many runs earlier requests already created.
    """
    from localagent.api.models import BULK_CREATE_MAX

    created: list[CreatedRun] = []
    for start in range(0, len(requests), BULK_CREATE_MAX):
        chunk = requests[start : start + BULK_CREATE_MAX]
        try:
            created.extend(client.create_runs(chunk).runs)
        except ApiRejected as exc:
            raise ApiRejected(exc.status_code, _locate(exc.detail, start, lines, source, len(created))) from None
    return created


def _locate(detail: str, offset: int, lines: Sequence[int] | None, source: str, done: int) -> str:
    match = _ITEM.match(detail)
    if match is not None:
        index = offset + int(match.group(1))
        where = f"{source} line {lines[index]}" if lines is not None else f"run {index + 1}"
        detail = f"{where}{match.group(2)}"
    if done:
        detail += f" ({done} runs were created by earlier requests)"
    else:
        detail += " (no run was created)"
    return detail
