"""Limits on a config document, checked before and after tomllib reads it.

Usage::

    problem = check_size(head, size)      # None, or (line, reason) for a file over 1 MiB
    problem = check_text(text)            # None, or (line, reason) for arrays too deep, numbers too long
    path = too_deep(document)             # None, or the first key path nested deeper than MAX_DEPTH

tomllib recurses once per nested array or inline table (about 500 levels exhaust Python's stack) and
refuses integers of more than 4,300 digits with a ValueError; a document of dotted keys can be nested
deeper still. A config needs none of that: its deepest value is ``runs.env.NAME`` (three levels). These
checks turn such documents into one clear problem with a line number, before anything can recurse or
overflow, and bound the size so that loading time stays linear and small.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from localagent.config.locate import KeyPath

MAX_FILE_BYTES = 1 << 20
"""A config file larger than 1 MiB is refused (real ones are a few KiB)."""

MAX_DEPTH = 32
"""Arrays, inline tables and dotted keys nested deeper than this are refused."""

MAX_NUMBER_CHARS = 1000
"""A number literal longer than this is refused (no config value needs more than 20 digits)."""

_NUMBER_CHARS = frozenset("0123456789_")


def check_text(text: str) -> tuple[int, str] | None:
    """``(line, reason)`` for the first limit ``text`` breaks, else ``None``.

    The scan skips strings and comments the way TOML writes them, so brackets and digits inside a string
    never count. It is one pass over the text; on text that is not TOML it may stop early, and tomllib
    then reports the syntax error.
    """
    depth = 0
    line = 1
    number_run = 0
    pos = 0
    end = len(text)
    while pos < end:
        char = text[pos]
        if char in _NUMBER_CHARS:
            number_run += 1
            if number_run > MAX_NUMBER_CHARS:
                return line, f"a number longer than {MAX_NUMBER_CHARS} characters; no config value needs one"
            pos += 1
            continue
        number_run = 0
        if char == "\n":
            line += 1
        elif char == "#":
            newline = text.find("\n", pos)
            pos = end if newline < 0 else newline
            continue
        elif char in "\"'":
            closing = _string_end(text, pos)
            line += text.count("\n", pos, closing)
            pos = closing
            continue
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line, f"arrays or tables nested more than {MAX_DEPTH} levels deep"
        elif char in "]}":
            depth = max(0, depth - 1)
        pos += 1
    return None


def _string_end(text: str, start: int) -> int:
    """The position just after the string that opens at ``start`` (or the end of the line if unclosed)."""
    quote = text[start]
    escapes = quote == '"'
    if text.startswith(quote * 3, start):
        delimiter, pos = quote * 3, start + 3
    else:
        delimiter, pos = quote, start + 1
    while pos < len(text):
        char = text[pos]
        if escapes and char == "\\":
            pos += 2
            continue
        if text.startswith(delimiter, pos):
            pos += len(delimiter)
            while delimiter != quote and pos < len(text) and text[pos] == quote:  # up to two extra quotes
                pos += 1
            return pos
        if char == "\n" and delimiter == quote:
            return pos  # an unclosed one-line string: tomllib will say so
        pos += 1
    return len(text)


def check_size(head: bytes, size: int) -> tuple[int, str] | None:
    """``(line, reason)`` when a file of ``size`` bytes is over the limit; ``head`` is its first bytes.

    The caller reads at most ``MAX_FILE_BYTES + 1`` bytes, so a huge file is never read whole.
    """
    if size <= MAX_FILE_BYTES:
        return None
    line = head[:MAX_FILE_BYTES].count(b"\n") + 1
    return line, f"the config file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,} bytes (1 MiB)"


def too_deep(document: Mapping[str, Any]) -> KeyPath | None:
    """The first key path nested deeper than :data:`MAX_DEPTH` (tables and arrays both count), else ``None``.

    Iterative, so it is safe on any depth tomllib could build (dotted keys are parsed without recursion).
    """
    stack: list[tuple[KeyPath, Any]] = [((), document)]
    while stack:
        path, value = stack.pop()
        if len(path) > MAX_DEPTH:
            return path
        if isinstance(value, dict):
            stack.extend(((*path, key), item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend(((*path, index), item) for index, item in enumerate(value))
    return None
