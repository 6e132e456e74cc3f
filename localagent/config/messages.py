"""Pydantic's validation errors, rewritten as plain config problems.

Usage::

    problems = describe_errors(exc.errors(), origin_of)
    str(problems[0])  # "agent.toml:7: agent.max_concurrent_runs: must be >= 0, got -1"

``origin_of`` maps a key path to the :class:`~localagent.config.sources.Origin` that set it, so each
problem names the file and line, the environment variable or the flag it came from.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from typing import Any

from pydantic_core import ErrorDetails

from localagent.config.locate import KeyPath
from localagent.config.sources import Origin
from localagent.errors import ConfigProblem

SECRET_KEYS = frozenset({"api.key"})

_EXPECTED = {
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "tuple_type": "expected an array",
    "list_type": "expected an array",
    "dict_type": "expected a table",
    "model_type": "expected a table",
    "model_attributes_type": "expected a table",
    "path_type": "expected a path (a string)",
    "string_too_short": "must not be empty",
    "finite_number": "expected a finite number",
}


def show_value(value: Any) -> str:
    """A value as it would be written in TOML, for ``got ...`` in messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return str(int(value)) if abs(value) < 1e16 else repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {show_value(item)}" for key, item in value.items()) + " }"
    return str(value)


def _known_keys(path: KeyPath) -> list[str]:
    from localagent.config.model import AgentConfig

    fields: dict[str, Any] = dict(AgentConfig.model_fields)
    for part in path[:-1]:
        field = fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        fields = dict(getattr(annotation, "model_fields", {}))
    return list(fields)


def _message(error: ErrorDetails, key: str, path: KeyPath) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    got = "" if key in SECRET_KEYS else f", got {show_value(value)}"
    if kind == "extra_forbidden":
        known = _known_keys(path)
        close = difflib.get_close_matches(str(path[-1]), known, n=1)
        if close:
            return f"unknown key (did you mean {'.'.join(str(p) for p in (*path[:-1], close[0]))}?)"
        return f"unknown key (expected one of: {', '.join(known)})" if known else "unknown key"
    if kind == "value_error":
        reason = str(ctx.get("error", error["msg"]))
        return reason if key not in SECRET_KEYS else reason.split(", got ")[0]
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        operator = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        bound = next(iter(ctx.values()), "?")
        return f"must be {operator} {show_value(bound)}{got}"
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected', '?')}{got}"
    if kind == "missing":
        return "is required"
    if kind in _EXPECTED:
        return _EXPECTED[kind] + got
    text = error["msg"]
    return f"{text[:1].lower()}{text[1:]}{got}"


def describe_errors(
    errors: Sequence[ErrorDetails], origin_of: Callable[[KeyPath], Origin | None]
) -> list[ConfigProblem]:
    """One :class:`ConfigProblem` per pydantic error, located by ``origin_of``."""
    problems: list[ConfigProblem] = []
    for error in errors:
        path: KeyPath = tuple(part for part in error["loc"] if isinstance(part, (str, int)))
        key = ".".join(str(part) for part in path)
        origin = origin_of(path) or Origin("config")
        problems.append(ConfigProblem(origin.source, key, _message(error, key, path), line=origin.line))
    return problems
