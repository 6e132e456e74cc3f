"""Helpers for the install tests: run the installed binary, read back what it generated."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path


def localagent(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed ``localagent`` in ``cwd`` with HOME and XDG_STATE_HOME inside it, no LOCALAGENT_ variables."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LOCALAGENT_")}
    environ.update({"HOME": str(cwd), "XDG_STATE_HOME": str(cwd / "state")}, **(env or {}))
    return subprocess.run(["localagent", *args], cwd=cwd, env=environ, capture_output=True, text=True, check=False)


def unit_fields(text: str) -> dict[str, list[str]]:
    """``KEY=value`` lines of a unit file (comments and section headers skipped), every value per key."""
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        fields.setdefault(key, []).append(value)
    return fields


def systemd_argv(exec_start: str) -> list[str]:
    """``ExecStart=`` back to argv: undo ``%%`` and ``$$``, then split as systemd does for what we write."""
    return shlex.split(re.sub(r"([%$])\1", r"\1", exec_start))
