"""Turning text from an environment variable or ``--set`` into a config value.

Usage::

    parse_value_text(("agent", "labels"), '["a", "b"]')     # ["a", "b"]
    parse_value_text(("agent", "poll_interval"), "3s")      # "3s" (not TOML, kept as a string)
    parse_value_text(("agent", "name"), "123")              # "123" (a text field keeps its text)

The text is read as a TOML value; if that fails it is a plain string. For fields that hold text
(names, URLs, paths, signal names, ``runs.env`` values) the raw text is kept whenever TOML would have
made it something other than a string, so ``LOCALAGENT_AGENT__NAME=123`` names the agent "123".
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import SecretStr

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

_TEXT_TYPES: tuple[type, ...] = (str, Path, SecretStr)


def _is_text_annotation(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_text_annotation(typing.get_args(annotation)[0])
    if origin is Literal:
        return all(isinstance(arg, str) for arg in typing.get_args(annotation))
    if origin in (Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return bool(args) and all(_is_text_annotation(arg) for arg in args)
    return isinstance(annotation, type) and issubclass(annotation, _TEXT_TYPES)


def is_text_field(path: tuple[str | int, ...]) -> bool:
    """Whether the config key at ``path`` holds text (so raw text from env or ``--set`` is kept as is)."""
    from localagent.config.model import AgentConfig

    if len(path) < 2 or not isinstance(path[0], str) or not isinstance(path[1], str):
        return False
    section = AgentConfig.model_fields.get(path[0])
    if section is None or not isinstance(section.annotation, type):
        return False
    field = getattr(section.annotation, "model_fields", {}).get(path[1])
    if field is None:
        return False
    if len(path) == 2:
        return _is_text_annotation(field.annotation)
    if len(path) == 3 and typing.get_origin(field.annotation) is dict:
        return _is_text_annotation(typing.get_args(field.annotation)[1])
    return False


def parse_toml_value(text: str) -> Any:
    """``text`` read as one TOML value, or ``text`` itself when it is not valid TOML."""
    try:
        document = tomllib.loads(f"value = {text}")
    except (tomllib.TOMLDecodeError, RecursionError, ValueError):  # ValueError: an integer of > 4300 digits
        return text
    # "1\nother = 2" parses too; only a single value counts.
    return document["value"] if list(document) == ["value"] else text


def parse_value_text(path: tuple[str | int, ...], text: str) -> Any:
    """The value ``text`` means for the key at ``path`` (see the module docstring)."""
    value = parse_toml_value(text)
    if not isinstance(value, str) and is_text_field(path):
        return text
    return value
