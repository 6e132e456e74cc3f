"""`localagent config validate|show|schema` through the installed binary, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]


def localagent(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LOCALAGENT_")}
    environ.update({"HOME": str(cwd), "XDG_STATE_HOME": str(cwd / "state")}, **(env or {}))
    return subprocess.run(["localagent", *args], cwd=cwd, env=environ, capture_output=True, text=True, check=False)


@pytest.fixture
def gitops(tmp_path: Path) -> Path:
    (tmp_path / "base.toml").write_text(
        "[agent]\n"
        'name = "${AGENT_NAME:-base-agent}"\n'
        'labels = ["etl"]\n'
        'poll_interval = "30s"\n'
        "max_concurrent_runs = 2\n"
        "\n"
        "[runs]\n"
        'env = { TZ = "${TZ_NAME:-UTC}" }\n'
    )
    (tmp_path / "host.toml").write_text(
        '[agent]\nlabels = ["etl", "gpu"]\nmax_concurrent_runs = 8\n\n[runs.env]\nCUDA = "0"\n'
    )
    return tmp_path


def test_validate_the_example_file() -> None:
    result = localagent("config", "validate", "-c", str(ROOT / "agent.example.toml"), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: ")
    assert result.stdout.count("\n") == 1


def test_validate_names_line_7_and_the_key_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text("# one\n# two\n# three\n# four\n\n[agent]\nmax_concurrent_runs = -1\n")
    result = localagent("config", "validate", "-c", "agent.toml", cwd=tmp_path)
    assert result.returncode == 1
    assert "agent.toml:7: agent.max_concurrent_runs: must be >= 0, got -1" in result.stderr.splitlines()
    assert "Traceback" not in result.stderr + result.stdout


def test_validate_reports_syntax_errors_unknown_keys_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "syntax.toml").write_text('[agent]\nname = "a"\nlabels = [\n')
    (tmp_path / "unknown.toml").write_text("[agent]\nmax_concurent_runs = 3\n")
    result = localagent(
        "config", "validate", "-c", "syntax.toml", "-c", "unknown.toml", "-c", "missing.toml", cwd=tmp_path
    )
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert any(line.startswith("syntax.toml:") and "TOML syntax error" in line for line in lines)
    assert "unknown.toml:2: agent.max_concurent_runs: unknown key (did you mean agent.max_concurrent_runs?)" in lines
    assert any(line.startswith("missing.toml: config file does not exist") for line in lines)
    assert lines[-1] == "config is invalid: 3 problems"
    assert "Traceback" not in result.stderr


def test_show_json_layers_files_env_flags_and_interpolation_defaults(gitops: Path) -> None:
    result = localagent(
        "config", "show", "--json", "-c", "base.toml", "-c", "host.toml", "--label", "cli",
        cwd=gitops, env={"LOCALAGENT_AGENT__POLL_INTERVAL": "3s"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["agent"]["max_concurrent_runs"] == 8  # host.toml over base.toml
    assert shown["agent"]["labels"] == ["etl", "gpu", "cli"]  # host.toml's array plus --label
    assert shown["agent"]["poll_interval"] == "3s"  # the environment over base.toml
    assert shown["agent"]["name"] == "base-agent"  # ${AGENT_NAME:-base-agent}
    assert shown["runs"]["env"] == {"TZ": "UTC", "CUDA": "0"}  # deep merge + default


def test_show_sources_names_where_each_value_came_from(gitops: Path) -> None:
    result = localagent(
        "config", "show", "--sources", "-c", "base.toml", "-c", "host.toml",
        "--label", "cli", "--set", "logs.level=debug",
        cwd=gitops, env={"LOCALAGENT_AGENT__POLL_INTERVAL": "3s"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "max_concurrent_runs = 8  # host.toml:3" in lines
    assert 'labels = ["etl", "gpu", "cli"]  # host.toml:2 + flag --label' in lines
    assert 'CUDA = "0"  # host.toml:6' in lines
    assert 'TZ = "UTC"  # base.toml:8' in lines
    assert 'poll_interval = "3s"  # env LOCALAGENT_AGENT__POLL_INTERVAL' in lines
    assert 'level = "DEBUG"  # flag --set' in lines
    assert 'format = "text"  # default' in lines


def test_show_prints_valid_toml_and_masks_secrets(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text('[api]\nkey = "${TOKEN}"\n[runs.env]\nDB_PASSWORD = "hunter2"\nTZ = "UTC"\n')
    result = localagent("config", "show", "-c", "agent.toml", cwd=tmp_path, env={"TOKEN": "very-secret-token"})
    assert result.returncode == 0, result.stderr
    assert "very-secret-token" not in result.stdout and "hunter2" not in result.stdout
    document = tomllib.loads(result.stdout)
    assert document["api"]["key"] == "********"
    assert document["runs"]["env"] == {"DB_PASSWORD": "********", "TZ": "UTC"}
    as_json = localagent(
        "config", "show", "--json", "-c", "agent.toml", cwd=tmp_path, env={"TOKEN": "very-secret-token"}
    )
    assert "very-secret-token" not in as_json.stdout


def test_show_accepts_env_and_set_overrides(tmp_path: Path) -> None:
    result = localagent(
        "config", "show", "--json", "--env", "A=1", "--set", "agent.max_polls=2", "-n", "x", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["runs"]["env"] == {"A": "1"}
    assert (shown["agent"]["max_polls"], shown["agent"]["name"]) == (2, "x")


def test_show_with_a_bad_config_prints_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text("[logs]\nlevel = 3\n")
    result = localagent("config", "show", "-c", "agent.toml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("ConfigError: agent.toml:2: logs.level: expected one of")
    assert "Traceback" not in result.stderr


def test_schema_equals_the_committed_file() -> None:
    result = localagent("config", "schema", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (ROOT / "schemas" / "agent.schema.json").read_text(encoding="utf-8")
