"""`localagent config init`: flags and LOCALAGENT_* variables become a commented agent.toml that validates."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

KEY = "sk-migrated-0123456789"


def localagent(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {name: value for name, value in os.environ.items() if not name.startswith("LOCALAGENT_")}
    environ = {**base, "HOME": str(cwd), **(env or {})}
    return subprocess.run(["localagent", *args], capture_output=True, text=True, cwd=cwd, env=environ, check=False)


FLAGS = (
    "--api", "http://127.0.0.1:4300", "--key", KEY, "--label", "etl", "--label", "gpu",
    "--env", "DB=prod", "--env", "PRICE=$5", "--no-hostname-label", "--limit", "4", "--set", "runs.stop_grace=1m",
)  # fmt: skip


def _effective(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert result.returncode == 0, result.stderr
    config: dict[str, dict[str, object]] = json.loads(result.stdout)
    for key in ("name", "state_dir"):
        config["agent"].pop(key)
    return dict(config)


def test_flags_and_variables_become_a_file_that_validates_and_means_the_same(tmp_path: Path) -> None:
    env = {"LOCALAGENT_AGENT__POLL_INTERVAL": "3s"}
    result = localagent("config", "init", *FLAGS, "-o", "agent.toml", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "agent.toml"
    text = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KEY not in text and "****" not in text
    assert 'key = "${LOCALAGENT_API_KEY}"' in text
    assert "# labels this agent accepts (from flag --label)" in text
    assert 'poll_interval = "3s"' in text and "(from env LOCALAGENT_AGENT__POLL_INTERVAL)" in text
    assert "\nname =" not in text and "state_dir" not in text  # nothing pinned that was not given
    assert "set LOCALAGENT_API_KEY for the agent" in result.stderr

    validated = localagent("config", "validate", "-c", "agent.toml", cwd=tmp_path, env={"LOCALAGENT_API_KEY": KEY})
    assert validated.returncode == 0, validated.stderr
    assert validated.stdout.startswith("OK: agent.toml is valid")
    from_file = localagent(
        "config", "show", "--json", "-c", "agent.toml", cwd=tmp_path, env={"LOCALAGENT_API_KEY": KEY}
    )
    from_flags = localagent("config", "show", "--json", *FLAGS, cwd=tmp_path, env=env)
    assert _effective(from_file) == _effective(from_flags)
    assert json.loads(from_file.stdout)["runs"]["env"]["PRICE"] == "$5"


def test_with_key_file_the_key_goes_to_a_private_file(tmp_path: Path) -> None:
    key_file = tmp_path / "secrets" / "api.key"
    result = localagent("config", "init", "--key", KEY, "--key-file", str(key_file), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert KEY not in result.stdout
    assert f'key_file = "{key_file}"' in result.stdout
    assert key_file.read_text().strip() == KEY and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    (tmp_path / "agent.toml").write_text(result.stdout)
    assert localagent("config", "validate", "-c", "agent.toml", cwd=tmp_path).returncode == 0
    other = localagent("config", "init", "--key", "sk-other", "--key-file", str(key_file), cwd=tmp_path)
    assert other.returncode == 1 and "holds a different key: pass --force" in other.stderr
    assert key_file.read_text().strip() == KEY


def test_nothing_given_writes_a_file_of_defaults_and_an_existing_file_needs_force(tmp_path: Path) -> None:
    result = localagent("config", "init", "-o", "agent.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Nothing was given" in (tmp_path / "agent.toml").read_text()
    again = localagent("config", "init", "--label", "x", "-o", "agent.toml", cwd=tmp_path)
    assert again.returncode == 1 and "agent.toml: already exists: pass --force to replace it" in again.stderr
    forced = localagent("config", "init", "--label", "x", "-o", "agent.toml", "--force", cwd=tmp_path)
    assert forced.returncode == 0 and 'labels = ["x"]' in (tmp_path / "agent.toml").read_text()


def test_an_invalid_flag_value_is_reported_like_config_validate(tmp_path: Path) -> None:
    result = localagent("config", "init", "--limit", "5000", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "flag --limit: agent.max_concurrent_runs: must be <= 1000, got 5000",
        "config is invalid: 1 problem",
    ]
