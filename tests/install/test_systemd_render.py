"""The systemd renderer: fields read back, and `systemd-analyze verify` accepts the unit."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from localagent.errors import ConfigError
from localagent.install import ServicePlan, render_systemd
from tests.install.support import systemd_argv, unit_fields
from tests.install.test_supervisord_render import TRICKY_ARGS, TRICKY_ENV, plan_with

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def test_exec_start_round_trips_and_settings_are_derived(tmp_path: Path) -> None:
    argv = ("/opt/venv/bin/localagent", "run", *TRICKY_ARGS, "a;b c", ";")
    plan = plan_with(tmp_path, argv=argv, environment=(("PATH", "/usr/bin:/bin"),), user="agent")
    fields = unit_fields(render_systemd(plan))

    assert systemd_argv(fields["ExecStart"][0]) == list(argv)
    assert fields["Environment"] == ['"PATH=/usr/bin:/bin"']
    assert fields["User"] == ["agent"]
    assert fields["TimeoutStopSec"] == ["75"]
    assert fields["KillSignal"] == ["SIGTERM"]
    assert fields["KillMode"] == ["mixed"]
    assert fields["Restart"] == ["on-failure"]
    assert fields["StandardOutput"] == ["journal"]
    assert fields["WorkingDirectory"] == [str(tmp_path)]


def test_specifiers_and_variables_are_escaped(tmp_path: Path) -> None:
    fields = unit_fields(
        render_systemd(plan_with(tmp_path, argv=("/x", "100%", "$HOME"), environment=(("P", '50% "x" \\'),)))
    )
    assert fields["ExecStart"] == ['/x "100%%" "$$HOME"']
    assert fields["Environment"] == ['"P=50%% \\"x\\" \\\\"']


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"argv": ("/x", "two\nlines")}, "control character"),
        ({"argv": ("relative/localagent", "run")}, "absolute path"),
        ({"environment": (("V", "a\rb"),)}, "control character"),
        ({"environment": (("1BAD", "v"),)}, "letters, digits"),
    ],
)
def test_values_systemd_cannot_hold_are_refused(tmp_path: Path, changes: dict[str, object], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        render_systemd(plan_with(tmp_path, **changes))


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed on this host")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    work = tmp_path / "work dir 100%"
    work.mkdir()
    plan = ServicePlan(
        name="localagent-verify",
        description="localagent agent verify 100%",
        argv=(sys.executable, "-m", "localagent.cli.main", "run", *TRICKY_ARGS),
        working_dir=work,
        environment=tuple(TRICKY_ENV),
        stop_timeout=75,
        user="root",
    )
    unit = tmp_path / "localagent-verify.service"
    unit.write_text(render_systemd(plan), encoding="utf-8")
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit)], capture_output=True, text=True, check=False, timeout=60
    )
    # verify reports unknown or malformed settings on stderr (sometimes with exit code 0): both must be clean
    assert result.returncode == 0, result.stderr
    assert "localagent-verify.service" not in result.stderr, result.stderr
