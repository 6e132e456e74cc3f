"""config_diff: what a reload log line says changed, and that it never shows a secret."""

from __future__ import annotations

from pathlib import Path

from localagent.agent.reload.diff import describe_changes, diff_configs
from localagent.config import LoadedConfig, load_config
from localagent.config.render import redact_url


def load(tmp_path: Path, body: str, name: str = "agent.toml") -> LoadedConfig:
    path = tmp_path / name
    path.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\nhostname_label = false\n{body}')
    return load_config([path], None, {})


def test_labels_and_poll_interval_read_like_the_config_file(tmp_path: Path) -> None:
    old = load(tmp_path, 'labels = ["a"]\npoll_interval = "10s"\n', "old.toml")
    new = load(tmp_path, 'labels = ["a", "b"]\npoll_interval = 5\n', "new.toml")
    assert describe_changes(diff_configs(old, new)) == "agent.labels ['a'] -> ['a', 'b']; agent.poll_interval 10s -> 5s"


def test_identical_configs_have_no_change(tmp_path: Path) -> None:
    old = load(tmp_path, 'labels = ["a"]\n', "old.toml")
    new = load(tmp_path, '# a comment\nlabels = ["a"]\n', "new.toml")
    assert diff_configs(old, new) == []
    assert describe_changes([]) == "no effective change"


def test_secrets_are_masked(tmp_path: Path) -> None:
    old = load(
        tmp_path,
        '[api]\nkey = "old-secret"\n[runs]\nenv = { DB_PASSWORD = "pw1", TZ = "UTC" }\n'
        '[server]\ndatabase = "postgresql://app:hunter2@db/la"\n',
        "old.toml",
    )
    new = load(
        tmp_path,
        '[api]\nkey = "new-secret"\n[runs]\nenv = { DB_PASSWORD = "pw2", TZ = "CET", NEW = "x" }\n'
        '[server]\ndatabase = "postgresql://app:hunter3@db2/la"\n',
        "new.toml",
    )
    line = describe_changes(diff_configs(old, new))
    for secret in ("old-secret", "new-secret", "pw1", "pw2", "hunter2", "hunter3"):
        assert secret not in line
    assert "api.key ******** -> ********" in line
    assert "runs.env.DB_PASSWORD ******** -> ********" in line
    assert "runs.env.TZ UTC -> CET" in line
    assert "runs.env.NEW (unset) -> x" in line
    assert "server.database postgresql://app:********@db/la -> postgresql://app:********@db2/la" in line


def test_a_rotated_key_file_shows_without_its_content(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("first")
    old = load(tmp_path, f'[api]\nkey_file = "{key_file}"\n')
    key_file.write_text("second")
    new = load(tmp_path, f'[api]\nkey_file = "{key_file}"\n')
    assert describe_changes(diff_configs(old, new)) == "api.key_file (content) ******** -> ******** (rotated)"


def test_unset_values_and_booleans(tmp_path: Path) -> None:
    old = load(tmp_path, "[logs]\nshow_flow_logs = false\n", "old.toml")
    new = load(tmp_path, f'[logs]\nshow_flow_logs = true\n[runs]\nworking_dir = "{tmp_path}"\n', "new.toml")
    assert describe_changes(diff_configs(old, new)) == (
        f"runs.working_dir (unset) -> {tmp_path}; logs.show_flow_logs false -> true"
    )


def test_redact_url_keeps_urls_without_a_password() -> None:
    assert redact_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert redact_url("postgresql://app@db/la") == "postgresql://app@db/la"
    assert redact_url("postgresql://app:pw@db/la") == "postgresql://app:********@db/la"
