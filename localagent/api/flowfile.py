"""``flows.toml``: flows declared in a file, the way ``agent.toml`` declares an agent.

Usage::

    specs = load_flows_file(Path("flows.toml"))   # list[FlowSpec], or ConfigError with file:line problems

The file holds ``[[flow]]`` tables, each one ``FlowSpec`` (the body of ``POST /api/flows``). Its JSON
schema (``schemas/flows.schema.json``) is :func:`flows_json_schema`.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from localagent.api.models import FlowSpec
from localagent.errors import ConfigError, ConfigProblem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

_DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?\s*[a-zA-Z]+\s*)+$"},
        {"type": "number", "minimum": 0},
    ]
}
_COMMAND_MESSAGE = "expected a list of strings (argv) or one string (run by /bin/sh -c)"
_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")
_BOUNDS = {
    "greater_than_equal": (">=", "ge"),
    "greater_than": (">", "gt"),
    "less_than_equal": ("<=", "le"),
    "less_than": ("<", "lt"),
}
_FLOW_HEADER = re.compile(r"^\s*\[\[\s*flow\s*\]\]")


class FlowsFile(BaseModel):
    """A ``flows.toml`` file: ``[[flow]]`` tables, each one a flow to register."""

    model_config = ConfigDict(extra="forbid", title="localagent flows.toml")

    flow: list[FlowSpec] = Field(default_factory=list, description="the flows to register, one [[flow]] table each")


def flows_json_schema() -> dict[str, Any]:
    """The JSON schema of ``flows.toml``; durations are written ``"1m"`` there, so they accept strings too."""
    schema = FlowsFile.model_json_schema()
    spec = schema["$defs"]["FlowSpec"]["properties"]
    spec["retry_delay"] = {**_DURATION_SCHEMA, "default": 0, "description": "seconds or a duration like '1m'"}
    spec["timeout"] = {
        "anyOf": [*_DURATION_SCHEMA["anyOf"], {"type": "null"}],
        "default": None,
        "description": "seconds or a duration like '30m'; none means no limit",
    }
    schedule = schema["$defs"]["ScheduleSpec"]["properties"]
    for key, meaning in (
        ("interval", "seconds or a duration like '15m' (whole seconds >= 1)"),
        ("deadline", "seconds or a duration like '10m': a fire time later than this gets no run"),
    ):
        schedule[key] = {
            "anyOf": [*_DURATION_SCHEMA["anyOf"], {"type": "null"}],
            "default": None,
            "description": meaning,
        }
    schedule["jitter"] = {**_DURATION_SCHEMA, "default": 0, "description": "seconds or a duration like '30s'"}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def load_flows_file(path: Path) -> list[FlowSpec]:
    """Read and validate ``path``; every problem is reported at once with its line where it can be found."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigProblem(source, "", f"cannot read the file: {exc.strerror or exc}")]) from exc
    return parse_flows(text, source)


def parse_flows(text: str, source: str = "flows.toml") -> list[FlowSpec]:
    """Validate the TOML ``text`` of a flows file named ``source`` (used in error messages)."""
    from localagent.config.guards import MAX_DEPTH, check_size, check_text, too_deep

    encoded = text.encode("utf-8", errors="surrogatepass")
    limit = check_size(encoded, len(encoded)) or check_text(text)  # the limits of agent.toml, same reasons
    if limit is not None:
        raise ConfigError([ConfigProblem(source, "", limit[1].replace("config file", "file"), limit[0])])
    try:
        data = tomllib.loads(text)
    except (RecursionError, ValueError) as exc:  # past what check_text catches; never a traceback
        if isinstance(exc, tomllib.TOMLDecodeError):
            raise _syntax_error(text, source, exc) from exc
        raise ConfigError([ConfigProblem(source, "", f"cannot read this document: {exc}", 1)]) from exc
    deep = too_deep(data)
    if deep is not None:
        where = ".".join(str(part) for part in deep[:3]) + "..."
        raise ConfigError([ConfigProblem(source, where, f"keys nested more than {MAX_DEPTH} levels deep")])
    locator = _Locator(text)
    try:
        flows = FlowsFile.model_validate(data).flow
    except ValidationError as exc:
        problems = sorted(_problems(exc, data, source, locator), key=lambda p: p.line or 0)
        raise ConfigError(problems) from exc
    problems = []
    seen: set[str] = set()
    for index, spec in enumerate(flows):
        if spec.name in seen:
            problems.append(
                ConfigProblem(
                    source,
                    f"flow[{index}].name",
                    f"flow {spec.name!r} is declared twice",
                    locator.line(index, ("name",)),
                )
            )
        seen.add(spec.name)
    if problems:
        raise ConfigError(problems)
    return flows


def _syntax_error(text: str, source: str, exc: tomllib.TOMLDecodeError) -> ConfigError:
    message = str(exc)
    position = _TOML_POSITION.search(message)
    line, column = (int(position[1]), int(position[2])) if position else (None, None)
    if line is None and "(at end of document)" in message:
        line = max(1, len(text.splitlines()))
    message = _TOML_POSITION.sub("", message).replace("(at end of document)", "at the end of the file").strip()
    return ConfigError([ConfigProblem(source, "", f"invalid TOML: {message}", line, column)])


def _problems(exc: ValidationError, data: dict[str, Any], source: str, locator: _Locator) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    keys_seen: set[str] = set()
    for error in exc.errors():
        loc = list(error["loc"])
        if len(loc) >= 3 and loc[0] == "flow" and isinstance(loc[1], int):
            index, fields = loc[1], tuple(str(part) for part in loc[2:])
            if fields[0] == "command" and len(fields) > 1:  # both arms of the list-or-string union failed
                fields, message = ("command",), _COMMAND_MESSAGE
            else:
                message = describe_error(error)
            key = _flow_key(data, index) + "".join(
                f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[2 : 2 + len(fields)]
            )
            line = locator.line(index, fields)
        else:
            key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
            message = describe_error(error)
            if error["type"] == "extra_forbidden":
                message = "unknown key; a flows file holds only [[flow]] tables"
            line = locator.top_level_line(str(loc[0])) if loc else None
        if key not in keys_seen:
            keys_seen.add(key)
            problems.append(ConfigProblem(source, key, message, line))
    return problems


def describe_error(error: Any) -> str:
    """One pydantic error as a short message for a user (no 'Value error, ' prefix, friendlier wording)."""
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required"
    bound = _BOUNDS.get(error["type"])
    if bound is not None:
        op, name = bound
        return f"must be {op} {error.get('ctx', {}).get(name)}, got {error.get('input')!r}"
    if error["type"] == "string_pattern_mismatch":
        return "must start with a letter or digit and hold only letters, digits, '.', '_' and '-'"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _flow_key(data: dict[str, Any], index: int) -> str:
    """``flow[2]``, or ``flow['nightly']`` when that table has a usable name."""
    flows = data.get("flow")
    if isinstance(flows, list) and index < len(flows) and isinstance(flows[index], dict):
        name = flows[index].get("name")
        if isinstance(name, str) and name:
            return f"flow[{name!r}]"
    return f"flow[{index}]"


class _Locator:
    """Finds the line of a key of the n-th ``[[flow]]`` table in the raw text (best effort, 1-based)."""

    def __init__(self, text: str) -> None:
        self._lines = text.splitlines()
        starts = [number for number, line in enumerate(self._lines) if _FLOW_HEADER.match(line)]
        self._tables = list(zip(starts, [*starts[1:], len(self._lines)][: len(starts)], strict=True))

    def line(self, index: int, fields: tuple[str, ...]) -> int | None:
        if index >= len(self._tables):
            return None
        start, end = self._tables[index]
        best = start
        position = 0
        while position < len(fields):
            field = fields[position]
            if position + 1 < len(fields) and fields[position + 1].isdigit():
                # an array of tables, e.g. the second [[flow.schedules]] of this flow
                found = self._nth_subtable(field, int(fields[position + 1]), best, end)
                if found is not None:
                    best, position = found, position + 2
                    continue
            found = self._find(field, best, end)
            if found is None:
                break
            best, position = found, position + 1
        return best + 1

    def _nth_subtable(self, key: str, nth: int, start: int, end: int) -> int | None:
        header = re.compile(rf"^\s*\[\[\s*flow\.{re.escape(key)}\s*\]\]")
        seen = 0
        for number in range(start, end):
            if header.match(self._lines[number]):
                if seen == nth:
                    return number
                seen += 1
        return None

    def top_level_line(self, key: str) -> int | None:
        end = self._tables[0][0] if self._tables else len(self._lines)
        found = self._find(key, 0, end)
        return None if found is None else found + 1

    def _find(self, key: str, start: int, end: int) -> int | None:
        pattern = re.compile(
            rf"""^\s*(\[\s*flow\.{re.escape(key)}\s*\]|["']?{re.escape(key)}["']?\s*=)|[{{,]\s*["']?{re.escape(key)}["']?\s*="""
        )
        for number in range(start, end):
            if pattern.search(self._lines[number]):
                return number
        return None
