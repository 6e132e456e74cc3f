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
from localagent.errors import ConfigProblem, escape_controls

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


MAX_REASON = 400  # a validator's reason that quotes a huge value is cut here
MAX_SHOWN = 120
"""A value echoed in a message is cut to about this many characters (a 5,000-digit number, a huge table)."""


def show_value(value: Any) -> str:
    """A value as it would be written in TOML, for ``got ...`` in messages: controls escaped, long ones cut."""
    parts: list[str] = []
    _show(value, parts, MAX_SHOWN)
    text = "".join(parts)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."


def _show(value: Any, out: list[str], budget: int) -> int:
    """Append ``value``'s spelling to ``out`` until ``budget`` characters are spent; return what is left.

    Iterating with a budget (not building the whole text) keeps a deep or huge value cheap to show.
    """
    if budget <= 0:
        return budget
    if isinstance(value, (list, tuple, dict)):
        items = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
        opening, closing = ("{ ", " }") if isinstance(value, dict) else ("[", "]")
        out.append(opening)
        budget -= len(opening)
        for position, (key, item) in enumerate(items):
            if budget <= 0:
                break
            if position:
                out.append(", ")
                budget -= 2
            if isinstance(value, dict):
                name = escape_controls(str(key)[:budget])
                out.append(f"{name} = ")
                budget -= len(name) + 3
            budget = _show(item, out, budget)
        out.append(closing)
        return budget - len(closing)
    text = _scalar(value, budget)
    out.append(text)
    return budget - len(text)


def _scalar(value: Any, budget: int) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        cut = value[: budget + 1]
        return '"' + escape_controls(cut.replace("\\", "\\\\").replace('"', '\\"')) + '"'
    if isinstance(value, int) and abs(value) >= 10**MAX_SHOWN:
        return f"(an integer of {len(str(abs(value))):,} digits)" if value.bit_length() < 14000 else "(a huge integer)"
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return str(int(value)) if abs(value) < 1e16 else repr(value)
    return escape_controls(str(value))


def _known_keys(path: KeyPath) -> list[str]:
    from localagent.config.model import AgentConfig

    fields: dict[str, Any] = dict(AgentConfig.model_fields)
    for part in path[:-1]:
        field = fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        fields = dict(getattr(annotation, "model_fields", {}))
    return list(fields)


def _unit_spelling(path: KeyPath) -> Callable[[Any], str] | None:
    """How a duration or size field spells its values (``5m``, ``1TiB``), so that limits read naturally."""
    from localagent.config.model import AgentConfig
    from localagent.config.units import format_duration, format_size, parse_duration, parse_size

    if len(path) != 2:
        return None
    section = AgentConfig.model_fields.get(str(path[0]))
    field = getattr(section.annotation, "model_fields", {}).get(str(path[1])) if section is not None else None
    for item in getattr(field, "metadata", ()):
        function = getattr(getattr(item, "func", None), "__name__", None)
        if function == parse_duration.__name__:
            return lambda seconds: format_duration(float(seconds)) if seconds < 1e9 else f"{float(seconds):g}s"
        if function == parse_size.__name__:
            return lambda size: format_size(int(size))
    return None


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
        if len(reason) > MAX_REASON:
            reason = reason[:MAX_REASON] + "..."
        return reason if key not in SECRET_KEYS else reason.split(", got ")[0]
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        operator = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        bound = next(iter(ctx.values()), "?")
        spell = _unit_spelling(path)
        if spell is not None and isinstance(bound, (int, float)) and isinstance(value, (int, float)):
            return f"must be {operator} {spell(bound)}, got {spell(value)}"
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
        # pydantic adds "[key]" to the location of a bad dict key: the key itself is the place to show.
        path: KeyPath = tuple(part for part in error["loc"] if isinstance(part, (str, int)) and part != "[key]")
        key = ".".join(str(part) for part in path)
        origin = origin_of(path) or Origin("config")
        problems.append(ConfigProblem(origin.source, key, _message(error, key, path), line=origin.line))
    return problems
