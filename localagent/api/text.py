"""What the API accepts as text: valid Unicode, and no NUL where a process or a database would choke on it.

JSON lets a client send ``"\\ud800"``, a lone UTF-16 surrogate: Python decodes it into a string that no
UTF-8 encoder takes, so it would fail later, far from the request (a 500 on every listing that includes
it). NUL cannot be part of an argv item, an environment variable or a PostgreSQL text. So:

- names, labels, ids, commands, run-config values and parameters (``Text``, ``EnvName``, ``Parameters``):
  a lone surrogate or a NUL is refused, with a 422 naming the field;
- free text an agent relays from a run or its config (``Relayed``: state messages, config errors): a lone
  surrogate becomes U+FFFD, as a NUL does where the database cannot hold it (``Database.without_nul``);
  such text must never make a report fail.

Parameters are also capped at ``PARAMETERS_MAX_BYTES`` as compact JSON: they reach the run as one
environment variable (``LOCALAGENT_PARAMETERS``), and Linux refuses a single one above 128 KiB.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

PARAMETERS_MAX_BYTES = 65_536
"""Largest ``parameters`` object (a run's, and a run's merged over its flow's defaults) as compact JSON."""

_SURROGATE = re.compile("[\ud800-\udfff]")
_NUL_OR_SURROGATE = re.compile("[\x00\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why ``value`` is not acceptable text (a lone surrogate or a NUL), or None."""
    if value.isascii():
        position = value.find("\x00")
        return None if position < 0 else f"contains a NUL character (at character {position})"
    found = _NUL_OR_SURROGATE.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return f"contains a NUL character (at character {found.start()})"
    return (
        f"contains a lone UTF-16 surrogate (\\u{ord(found.group()):04x} at character {found.start()}), "
        "which is not valid Unicode text"
    )


def valid_text(value: Any) -> Any:
    """Runs before pydantic's own ``str`` check (which would refuse a surrogate in vaguer words)."""
    if isinstance(value, str):
        problem = text_problem(value)
        if problem is not None:
            raise ValueError(problem)
    return value


def valid_env_name(value: Any) -> Any:
    valid_text(value)
    if isinstance(value, str) and (not value or "=" in value):
        raise ValueError(f"environment variable name {value!r} must be non-empty and contain no '='")
    return value


def replace_surrogates(value: Any) -> Any:
    """``value`` with each lone surrogate replaced by U+FFFD (valid text is returned as it is)."""
    if not isinstance(value, str) or value.isascii() or _SURROGATE.search(value) is None:
        return value
    return _SURROGATE.sub("\ufffd", value)


def valid_parameters(value: dict[str, Any]) -> dict[str, Any]:
    """Every key and string in the parameters is acceptable text, and their JSON fits the cap."""
    _check_json(value, "")
    try:
        size = len(json.dumps(value, separators=(",", ":"), allow_nan=False))
    except ValueError as exc:
        raise ValueError(f"value cannot be stored as JSON: {exc}") from exc
    if size > PARAMETERS_MAX_BYTES:
        raise ValueError(f"take {size} bytes as JSON; at most {PARAMETERS_MAX_BYTES} are allowed")
    return value


def _check_json(value: Any, path: str) -> None:
    if isinstance(value, str):
        problem = text_problem(value)
        if problem is not None:
            raise ValueError(f"{path!r} {problem}" if path else problem)
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            problem = text_problem(str(key))
            if problem is not None:
                raise ValueError(f"key {where!r} {problem}")
            _check_json(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, f"{path}[{index}]")


Text = Annotated[str, BeforeValidator(valid_text)]
"""A name, label, id, argv item or value: a lone surrogate or a NUL is refused."""
EnvName = Annotated[str, BeforeValidator(valid_env_name)]
"""An environment variable's name: ``Text``, not empty, no ``=``."""
Relayed = Annotated[str, BeforeValidator(replace_surrogates)]
"""Free text relayed from a run or a config (never refused): lone surrogates become U+FFFD."""
Parameters = Annotated[dict[str, Any], AfterValidator(valid_parameters)]
"""A run's or a flow's parameters: ``Text`` keys and strings at any depth, at most ``PARAMETERS_MAX_BYTES``."""
