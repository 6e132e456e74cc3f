"""``${VAR}``, ``${VAR:-default}`` and ``$$`` in the string values of config files.

Usage::

    interpolate("${HOME}/jobs", {"HOME": "/home/a"})        # "/home/a/jobs"
    interpolate("${PORT:-4300}", {})                        # "4300"
    interpolate("cost: $$5", {})                            # "cost: $5"

Rules, as in a POSIX shell and docker compose: ``${VAR:-default}`` uses ``default`` when ``VAR`` is
unset *or empty*; the default may itself contain ``${OTHER}``. A ``$`` followed by anything other than
``{`` or ``$`` is kept as written. A missing variable with no default, a malformed name and an
unterminated ``${`` raise :class:`InterpolationError`, which the loader turns into a config problem
naming the key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class InterpolationError(ValueError):
    """A ``${...}`` reference could not be resolved; the message says which and why."""


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """``text`` with every ``${...}`` replaced from ``environ`` and ``$$`` turned into ``$``."""
    if "$" not in text:
        return text
    out: list[str] = []
    pos = 0
    while True:
        dollar = text.find("$", pos)
        if dollar < 0:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos:dollar])
        following = text[dollar + 1 : dollar + 2]
        if following == "$":
            out.append("$")
            pos = dollar + 2
        elif following == "{":
            end = _closing_brace(text, dollar + 2)
            out.append(_resolve(text[dollar + 2 : end], environ))
            pos = end + 1
        else:
            out.append("$")
            pos = dollar + 1


def _closing_brace(text: str, start: int) -> int:
    """Index of the ``}`` that closes the ``${`` opened just before ``start`` (nesting allowed)."""
    depth = 1
    pos = start
    while pos < len(text):
        if text.startswith("$$", pos):
            pos += 2
            continue
        if text.startswith("${", pos):
            depth += 1
            pos += 2
            continue
        if text[pos] == "}":
            depth -= 1
            if depth == 0:
                return pos
        pos += 1
    raise InterpolationError(f"unterminated '${{' in {text!r}: close it with '}}' or write '$$' for a literal '$'")


def _resolve(body: str, environ: Mapping[str, str]) -> str:
    name, has_default, default = body.partition(":-")
    if not _NAME.match(name):
        raise InterpolationError(
            f"'${{{body}}}' is not a variable reference: write ${{NAME}} or ${{NAME:-default}}, "
            "or '$$' for a literal '$'"
        )
    value = environ.get(name)
    if value:
        return value
    if has_default:
        return interpolate(default, environ)
    if value is not None:
        return value
    raise InterpolationError(f"environment variable {name} is not set (write ${{{name}:-default}} to give a default)")


def interpolate_tree(
    value: Any, environ: Mapping[str, str], path: tuple[str | int, ...] = ()
) -> tuple[Any, list[tuple[tuple[str | int, ...], str]]]:
    """Interpolate every string in a parsed TOML tree; returns the new tree and ``(path, message)`` failures.

    A value that fails is left out of the result, so the rest of the document can still be checked.
    """
    failures: list[tuple[tuple[str | int, ...], str]] = []
    if isinstance(value, str):
        try:
            return interpolate(value, environ), failures
        except InterpolationError as exc:
            return _FAILED, [(path, str(exc))]
    if isinstance(value, dict):
        table: dict[str, Any] = {}
        for key, item in value.items():
            new, problems = interpolate_tree(item, environ, (*path, key))
            failures.extend(problems)
            if new is not _FAILED:
                table[key] = new
        return table, failures
    if isinstance(value, list):
        items: list[Any] = []
        for index, item in enumerate(value):
            new, problems = interpolate_tree(item, environ, (*path, index))
            failures.extend(problems)
            items.append(new)
        if failures:
            return _FAILED, failures
        return items, failures
    return value, failures


class _Failed:
    """Marks a value whose interpolation failed (so it is dropped, not validated)."""


_FAILED: Any = _Failed()
