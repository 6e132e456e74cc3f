"""What the service plan derives from the effective config and the installing shell."""

from __future__ import annotations

import os
from pathlib import Path

from localagent.config import FlagOverrides, load_config
from localagent.install import build_plan, stop_timeout
from localagent.install.plan import (
    SHUTDOWN_MARGIN,
    default_service_name,
    localagent_executable,
    service_environment,
)


def script(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_the_console_script_next_to_the_interpreter_wins_over_path(tmp_path: Path) -> None:
    venv = script(tmp_path / "venv" / "bin" / "localagent")
    shim = script(tmp_path / "shims" / "localagent")
    found = localagent_executable(
        python=str(tmp_path / "venv" / "bin" / "python"), argv0="localagent", which=lambda _: str(shim)
    )
    assert found == [str(venv)]


def test_then_the_started_script_then_path_then_python_m(tmp_path: Path) -> None:
    started = script(tmp_path / "started" / "localagent")
    on_path = script(tmp_path / "path" / "localagent")
    python = str(tmp_path / "nowhere" / "python")
    assert localagent_executable(python, argv0=str(started), which=lambda _: str(on_path)) == [str(started)]
    assert localagent_executable(python, argv0="/x/pytest", which=lambda _: str(on_path)) == [str(on_path)]
    assert localagent_executable(python, argv0="/x/pytest", which=lambda _: None) == [
        python,
        "-m",
        "localagent.cli.main",
    ]


def test_stop_timeout_covers_drain_grace_and_margin() -> None:
    loaded = load_config([], FlagOverrides(assignments=("runs.drain_timeout=90s", "runs.stop_grace=2.5s")), {})
    assert stop_timeout(loaded) == 93 + int(SHUTDOWN_MARGIN)  # 92.5 s rounded up to whole seconds


def test_service_environment_passes_config_variables_but_never_the_key() -> None:
    environ = {
        "PATH": "/usr/bin",
        "LOCALAGENT_AGENT__NAME": "a",
        "LOCALAGENT_API__KEY": "secret",
        "LOCALAGENT_api__key": "secret",
        "LOCALAGENT_API_URL": "http://x",  # a shell-command variable, not config
        "HOME": "/home/u",
    }
    assert service_environment(environ) == (("PATH", "/usr/bin"), ("LOCALAGENT_AGENT__NAME", "a"))


def test_service_names_are_safe_for_both_managers() -> None:
    assert default_service_name("etl box/1") == "localagent-etl-box-1"
    assert default_service_name("...") == "localagent"


def test_state_dir_is_pinned_only_when_it_came_from_the_default(tmp_path: Path) -> None:
    environ = {"HOME": str(tmp_path)}
    default = load_config([], None, environ)
    chosen = load_config([], FlagOverrides(assignments=(f"agent.state_dir={tmp_path / 's'}",)), environ)
    exe = ["/bin/localagent"]

    pinned = build_plan(default, [], environ, tmp_path, executable=exe, key_file=tmp_path / "k")
    assert pinned.argv == (
        "/bin/localagent", "run",
        "--set", f"agent.state_dir={tmp_path / '.local' / 'state' / 'localagent'}",
        "--set", f"api.key_file={tmp_path / 'k'}",
    )  # fmt: skip
    assert build_plan(chosen, ["--set", "x"], environ, tmp_path, executable=exe).argv == (
        "/bin/localagent",
        "run",
        "--set",
        "x",
    )
    assert os.path.isabs(pinned.working_dir)
