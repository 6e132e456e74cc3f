"""Helpers shared by the API command groups: the --api/--key options, output, and parsing of flag values.

Only typer and the standard library are imported here at module level, so that ``localagent --help``
stays quick; requests and pydantic are imported by the commands that need them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

    from localagent.api.client import ApiClient
    from localagent.api.models import StateName
    from localagent.errors import ConfigError

DEFAULT_API_URL = "http://127.0.0.1:4300"
REQUEST_TIMEOUT = 10.0

ApiUrlOption = Annotated[
    str,
    typer.Option(
        "--api",
        "-a",
        envvar="LOCALAGENT_API_URL",
        metavar="URL",
        help="Base url of the orchestration API.",
        rich_help_panel="API",
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--key",
        "-k",
        envvar=["LOCALAGENT_API_KEY", "LOCALAGENT_API_TOKEN"],
        metavar="KEY",
        show_default=False,
        help="API key (Bearer). Inside a flow run the run's own LOCALAGENT_API_TOKEN is used when no key is set.",
        rich_help_panel="API",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (the API's field names) instead of a table.")]


@contextmanager
def api_client(url: str, key: str | None) -> Iterator[ApiClient]:
    """An ``ApiClient`` for one command; a refused key gets a hint on how to pass one."""
    from localagent.api.client import ApiClient
    from localagent.config.model import api_key_problem
    from localagent.errors import ApiUnauthorized, ConfigError, ConfigProblem

    problem = api_key_problem(key) if key is not None else None
    if problem is not None:
        raise ConfigError([ConfigProblem("--key / LOCALAGENT_API_KEY", "", f"the API key {problem}")])
    with ApiClient(url, key=key, timeout=REQUEST_TIMEOUT, retries=2) as client:
        try:
            yield client
        except ApiUnauthorized as exc:
            hint = "check --key / LOCALAGENT_API_KEY" if key else "pass --key or set LOCALAGENT_API_KEY"
            raise ApiUnauthorized(exc.status_code, f"{exc} ({hint})") from exc


# -- output --------------------------------------------------------------------------------------------


def table_lines(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """The header and row lines of a table: columns aligned by their widest cell, the last one not padded."""
    table = [list(headers), *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(row[column]) for row in table) for column in range(len(headers))]
    lines = []
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths[:-1], strict=True)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return lines


def print_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Columns aligned by their widest cell; the last column is not padded."""
    for line in table_lines(headers, rows):
        typer.echo(line)


def print_json(data: BaseModel | Sequence[BaseModel]) -> None:
    """A model or a list of models as indented JSON, with the wire field names."""
    if isinstance(data, Sequence):
        payload: Any = [item.model_dump(mode="json") for item in data]
    else:
        payload = data.model_dump(mode="json")
    typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))


def print_fields(fields: Sequence[tuple[str, str]]) -> None:
    """``key: value`` lines with the values aligned."""
    width = max((len(key) for key, _ in fields), default=0) + 1
    for key, value in fields:
        typer.echo(f"{key + ':':<{width}} {value}".rstrip())


def format_time(moment: datetime | None) -> str:
    """A time in the local time zone, to the second: ``2024-05-01 14:03:07``; ``-`` for none."""
    if moment is None:
        return "-"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def format_ago(moment: datetime | None, now: datetime | None = None) -> str:
    """How long ago ``moment`` was: ``4s ago``, ``3m ago``, ``2h ago``, ``5d ago``; ``in 3m`` for the future."""
    if moment is None:
        return "-"
    seconds = ((now or datetime.now(timezone.utc)) - moment).total_seconds()
    future, seconds = seconds < 0, abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            text = f"{int(seconds // size)}{unit}"
            break
    else:
        text = f"{int(seconds)}s"
    return f"in {text}" if future else f"{text} ago"


def format_labels(labels: Iterable[str]) -> str:
    """``etl, gpu`` (as the docs write label lists), or ``-`` for none."""
    return ", ".join(labels) or "-"


def shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def report_config_error(exc: ConfigError, exit_code: int = 1) -> NoReturn:
    """Every problem on its own line, then how many there are, on stderr; exit ``exit_code``.

    The form ``config validate``, ``install`` and ``config init`` share:
    ``agent.toml:7: agent.max_concurrent_runs: must be >= 0, got -1`` / ``config is invalid: 1 problem``.
    """
    for problem in exc.problems:
        typer.echo(str(problem), err=True)
    if exc.count > len(exc.problems):
        typer.echo(exc.omitted_line(exc.count - len(exc.problems), len(exc.problems)), err=True)
    typer.echo(f"config is invalid: {exc.count} problem{'s' if exc.count != 1 else ''}", err=True)
    raise typer.Exit(exit_code)


def echo_err(message: str) -> None:
    typer.echo(message, err=True)


def flush() -> None:
    sys.stdout.flush()


# -- parsing of flag values ------------------------------------------------------------------------------


def parse_pairs(values: Sequence[str], option: str) -> dict[str, str]:
    """``["A=1", "B=x=y"]`` -> ``{"A": "1", "B": "x=y"}``; anything without ``=`` is a usage error."""
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {value!r}", param_hint=option)
        pairs[key.strip()] = text
    return pairs


def parse_params(values: Sequence[str]) -> dict[str, Any]:
    """``--param k=v`` values: JSON when the value parses as JSON (``n=3``, ``xs=[1,2]``), else the string."""
    params: dict[str, Any] = {}
    for key, text in parse_pairs(values, "--param").items():
        try:
            params[key] = json.loads(text)
        except ValueError:
            params[key] = text
    return params


def parse_duration_option(value: str | None, option: str) -> float | None:
    """``"1m30s"`` or ``"90"`` -> seconds; a usage error naming ``option`` otherwise."""
    if value is None:
        return None
    from localagent.config.units import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def parse_at(value: str, now: datetime | None = None) -> datetime:
    """``--at``: ISO 8601 (local time when no offset is given), ``+5m``/``+1h30m`` from now, or ``now``."""
    from localagent.config.units import parse_duration

    text = value.strip()
    now = now or datetime.now(timezone.utc)
    if text.lower() == "now":
        return now
    if text.startswith("+"):
        try:
            return now + timedelta(seconds=parse_duration(text[1:]))
        except ValueError:
            raise typer.BadParameter(
                f"expected a relative time like '+5m' or '+1h30m', got {value!r}", param_hint="--at"
            ) from None
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise typer.BadParameter(
            f"expected an ISO 8601 time like '2024-05-01T14:00' or '2024-05-01T12:00Z', or '+5m', got {value!r}",
            param_hint="--at",
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a time without an offset is this machine's local time
    return moment.astimezone(timezone.utc)


def parse_state(value: str | None) -> StateName | None:
    """``--state running`` -> ``StateName.RUNNING`` (any case)."""
    if value is None:
        return None
    from localagent.api.models import StateName

    for state in StateName:
        if state.value.lower() == value.strip().lower():
            return state
    choices = ", ".join(state.value for state in StateName)
    raise typer.BadParameter(f"expected one of {choices}; got {value!r}", param_hint="--state")


def usage_error(exc: ValidationError, hints: dict[str, str]) -> typer.BadParameter:
    """A pydantic error about flag values as one usage error (exit 2) naming the flags; ``hints`` maps
    a model field to its flag (``{"retries": "--retries"}``)."""
    from localagent.api.flowfile import describe_error

    flags: list[str] = []
    problems: list[str] = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        flag = hints.get(loc[0], loc[0]) if loc else "value"
        if flag not in flags:
            flags.append(flag)
        inner = ".".join(loc[1:])
        problems.append(f"{inner}: {describe_error(error)}" if inner and len(loc) > 1 else describe_error(error))
    return typer.BadParameter("; ".join(problems), param_hint="/".join(flags))
