"""The run option set: every flag feeds the one flag source, and argv round-trips (for `install`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import typer
from typer.testing import CliRunner

from localagent.cli.run_options import RunOptions, with_run_options
from localagent.config import load_config

EVERY_FLAG = [
    "-c", "a.toml", "--config", "b.toml", "--name", "worker", "-l", "x", "--label", "y", "-e", "A=1",
    "--env", "B=2=3", "--api", "http://127.0.0.1:9", "--key", "k", "-f", "--no-hostname-label",
    "--no-cloud-logs", "--max-polls", "3", "--agent-address", "127.0.0.1:0", "--log-level", "debug",
    "-p", "/lib", "--import-path", "lib2", "--working-dir", "/srv", "--limit", "4",
    "--set", "runs.stop_grace=1m", "--set", 'agent.labels=["z"]',
]  # fmt: skip


def parse(argv: list[str]) -> RunOptions:
    """Parse ``argv`` with a throwaway command that declares the run options, as `install` does."""
    app = typer.Typer()
    seen: list[RunOptions] = []

    @app.command()
    @with_run_options
    def command(options: RunOptions, extra: bool = False) -> None:
        seen.append(options)

    @app.command("other")
    def other() -> None:  # a second command keeps typer from treating `command` as the whole app
        pass

    result = CliRunner().invoke(app, ["command", *argv])
    assert result.exit_code == 0, result.output
    return seen[0]


def test_every_flag_reaches_the_options() -> None:
    options = parse(EVERY_FLAG)
    assert options.config == (Path("a.toml"), Path("b.toml"))
    assert options.label == ("x", "y")
    assert options.env == ("A=1", "B=2=3")
    assert (options.show_flow_logs, options.hostname_label, options.no_api_logs) == (True, False, True)
    assert options.import_path == ("/lib", "lib2")
    assert options.set == ("runs.stop_grace=1m", 'agent.labels=["z"]')


def test_options_load_into_the_config(tmp_path: Path) -> None:
    flags = parse(EVERY_FLAG[4:]).to_flags()  # without the config files
    config = load_config([], flags, {"HOME": str(tmp_path)}).config
    assert config.agent.name == "worker"
    assert config.agent.labels == ("z", "x", "y")  # --set replaced, --label added
    assert config.agent.hostname_label is False
    assert config.agent.max_polls == 3
    assert config.agent.max_concurrent_runs == 4
    assert config.api.url == "http://127.0.0.1:9"
    assert config.api.key is not None and config.api.key.get_secret_value() == "k"
    assert config.runs.env == {"A": "1", "B": "2=3"}
    assert config.runs.import_paths == ("/lib", "lib2")
    assert config.runs.working_dir == Path("/srv")
    assert config.runs.stop_grace == 60.0
    assert (config.logs.show_flow_logs, config.logs.send_to_api, config.logs.level) == (True, False, "DEBUG")
    assert config.health.address == "127.0.0.1:0"


def test_flags_not_given_change_nothing(tmp_path: Path) -> None:
    options = parse([])
    assert options == RunOptions()
    assert options.to_argv() == []
    assert load_config([], options.to_flags(), {"HOME": str(tmp_path)}).config.agent.hostname_label is True


def test_argv_round_trips() -> None:
    options = parse(EVERY_FLAG)
    assert parse(options.to_argv()) == options


def test_argv_for_service_files_is_absolute_and_keyless(tmp_path: Path, monkeypatch: object) -> None:
    options = parse(["-c", "a.toml", "-p", "lib", "--working-dir", "w", "--key", "secret", "--hostname-label"])
    argv = options.to_argv(absolute=True, include_key=False)
    assert "secret" not in argv and "--key" not in argv
    assert argv[argv.index("--config") + 1] == str(Path("a.toml").absolute())
    assert argv[argv.index("--import-path") + 1] == str(Path("lib").absolute())
    assert argv[argv.index("--working-dir") + 1] == str(Path("w").absolute())
    assert "--hostname-label" in argv


def run_binary(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LOCALAGENT_")}
    environ.update(HOME=str(cwd), XDG_STATE_HOME=str(cwd / "state"))
    return subprocess.run(
        ["localagent", "run", *args], cwd=cwd, env=environ, capture_output=True, text=True, check=False, timeout=60
    )


def test_run_refuses_a_bad_file_naming_line_and_key(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text("# 1\n# 2\n# 3\n# 4\n# 5\n[agent]\nmax_concurrent_runs = -1\n")
    result = run_binary("-c", "agent.toml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "ConfigError: agent.toml:7: agent.max_concurrent_runs: must be >= 0, got -1"


def test_run_names_the_flag_of_a_bad_override(tmp_path: Path) -> None:
    result = run_binary("--limit", "-2", "--log-level", "loud", cwd=tmp_path)
    assert result.returncode == 1
    assert "flag --limit: agent.max_concurrent_runs: must be >= 0, got -2" in result.stderr
    assert "flag --log-level: logs.level: expected one of" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_with_a_missing_config_file_says_so(tmp_path: Path) -> None:
    result = run_binary("-c", "nope.toml", cwd=tmp_path)
    assert result.returncode == 1
    assert "nope.toml: config file does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_help_lists_every_override() -> None:
    result = subprocess.run(["localagent", "run", "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    for flag in ("--config", "--name", "--label", "--env", "--api", "--key", "--show-flow-logs", "--hostname-label",
                 "--no-api-logs", "--max-polls", "--agent-address", "--log-level", "--import-path",
                 "--working-dir", "--limit", "--set"):  # fmt: skip
        assert flag in result.stdout, flag
