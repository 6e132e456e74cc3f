"""Durations and sizes as they are written in config files and on the command line.

Durations: ``"30s"``, ``"5m"``, ``"1h30m"``, ``"1.5h"`` or a number of seconds (parsed by pytimeparse).
Sizes: ``"64MiB"``, ``"1GB"``, ``"512"`` or a number of bytes (parsed by pydantic's ``ByteSize``).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, ByteSize, PlainSerializer, TypeAdapter, WithJsonSchema
from pytimeparse.timeparse import timeparse

_DURATION_PATTERN = r"^\s*(\d+(\.\d+)?\s*(w|d|h|m|s|wks?|weeks?|days?|hrs?|hours?|mins?|minutes?|secs?|seconds?)\s*)+$"


def parse_duration(value: Any) -> float:
    """Seconds in ``value``: a non-negative number, or a string like ``"30s"``, ``"1h30m"``, ``"90"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '30s', '5m' or a number of seconds, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = _as_seconds(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            parsed = timeparse(text) if text else None
            if parsed is None:
                raise ValueError(
                    f"expected a duration like '30s', '5m', '1h30m' or a number of seconds, got {value!r}"
                ) from None
            seconds = _as_seconds(parsed)
    else:
        raise ValueError(f"expected a duration like '30s', '5m' or a number of seconds, got {value!r}")
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError(f"expected a finite duration, got {value!r}")
    if seconds < 0:
        # The same form as the model's own bounds ("must be > 0s, got 0s"), whatever spelling was given.
        raise ValueError(f"must be >= 0s, got -{format_duration(-seconds)}")
    return seconds


def _as_seconds(value: float) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer past the float range
        return float("inf")


def format_duration(seconds: float) -> str:
    """The shortest readable spelling of ``seconds``: ``90`` -> ``"1m30s"``, ``0.5`` -> ``"0.5s"``."""
    if seconds != int(seconds):
        return f"{seconds:g}s"
    whole = int(seconds)
    if whole == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


_BYTES = TypeAdapter(ByteSize)


def parse_size(value: Any) -> int:
    """Bytes in ``value``: a non-negative integer or a string like ``"64MiB"``, ``"1GB"``, ``"512"``."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected a size like '64MiB', '1GB' or a number of bytes, got {value!r}")
    try:
        size = int(_BYTES.validate_python(value))
    except (ValueError, OverflowError):
        raise ValueError(f"expected a size like '64MiB', '1GB' or a number of bytes, got {value!r}") from None
    if size < 0:
        raise ValueError(f"must be >= 0B, got -{format_size(-size)}")
    return size


def format_size(size: int) -> str:
    """A readable exact spelling of ``size`` bytes: ``67108864`` -> ``"64MiB"``."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B" if size else "0B"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": _DURATION_PATTERN},
                {"type": "number", "minimum": 0},
            ],
            "description": "a duration: '30s', '5m', '1h30m' or a number of seconds",
        }
    ),
]
"""Seconds, as a float; written ``"30s"``, ``"5m"``, ``"1h30m"`` or a number."""

Size = Annotated[
    int,
    BeforeValidator(parse_size),
    PlainSerializer(format_size, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[a-zA-Z]*\s*$"},
                {"type": "integer", "minimum": 0},
            ],
            "description": "a size: '64MiB', '1GB' or a number of bytes",
        }
    ),
]
"""Bytes, as an int; written ``"64MiB"``, ``"1GB"`` or a number."""
