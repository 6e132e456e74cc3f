"""Helpers for config tests: write TOML files into tmp_path."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

WriteToml = Callable[[str, str], Path]


@pytest.fixture
def write_toml(tmp_path: Path) -> WriteToml:
    """``write_toml("agent.toml", text)`` writes dedented ``text`` and returns the path."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write
