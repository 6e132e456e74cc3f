"""The installed entry point answers --version and --help."""

from __future__ import annotations

import subprocess

from localagent import __version__


def test_version_through_installed_binary() -> None:
    result = subprocess.run(["localagent", "--version"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert result.stdout.strip() == f"localagent {__version__}"


def test_unknown_command_is_usage_error() -> None:
    result = subprocess.run(["localagent", "no-such-command"], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
