"""Precedence: defaults < files (in order) < environment < flags; one test per adjacent pair."""

from __future__ import annotations

from pathlib import Path

from localagent.config import FlagOverrides, FlagSetting, load_config
from localagent.config.render import public_hash
from tests.config.conftest import WriteToml


def test_file_beats_defaults(write_toml: WriteToml) -> None:
    path = write_toml("agent.toml", "[agent]\nmax_polls = 5\n")
    loaded = load_config([path], environ={})
    assert loaded.config.agent.max_polls == 5
    assert loaded.origins["agent.max_polls"] == f"{path}:2"
    assert loaded.config.agent.poll_interval == 10.0
    assert loaded.origins["agent.poll_interval"] == "default"


def test_later_file_beats_earlier_file_and_tables_merge_deeply(write_toml: WriteToml) -> None:
    base = write_toml("base.toml", '[agent]\nlabels = ["a", "b"]\nmax_polls = 1\n[runs.env]\nA = "1"\n')
    host = write_toml("host.toml", '[agent]\nlabels = ["c"]\n[runs.env]\nB = "2"\n')
    loaded = load_config([base, host], environ={})
    assert loaded.config.agent.labels == ("c",)  # arrays replace
    assert loaded.config.agent.max_polls == 1  # untouched keys survive
    assert loaded.config.runs.env == {"A": "1", "B": "2"}  # tables merge
    assert loaded.origins["agent.labels"] == f"{host}:2"
    assert loaded.origins["runs.env.A"] == f"{base}:5"
    assert loaded.origins["runs.env.B"] == f"{host}:4"
    assert loaded.files == (base, host)


def test_environment_beats_files(write_toml: WriteToml) -> None:
    path = write_toml("agent.toml", '[agent]\npoll_interval = "30s"\nlabels = ["f"]\n')
    environ = {"LOCALAGENT_AGENT__POLL_INTERVAL": "3s", "LOCALAGENT_AGENT__LABELS": '["e1", "e2"]'}
    loaded = load_config([path], environ=environ)
    assert loaded.config.agent.poll_interval == 3.0
    assert loaded.config.agent.labels == ("e1", "e2")
    assert loaded.origins["agent.poll_interval"] == "env LOCALAGENT_AGENT__POLL_INTERVAL"


def test_flags_beat_environment() -> None:
    environ = {"LOCALAGENT_AGENT__MAX_CONCURRENT_RUNS": "2", "LOCALAGENT_AGENT__NAME": "from-env"}
    flags = FlagOverrides(settings=(FlagSetting("agent.max_concurrent_runs", 7, "--limit"),))
    loaded = load_config([], flags, environ)
    assert loaded.config.agent.max_concurrent_runs == 7
    assert loaded.origins["agent.max_concurrent_runs"] == "flag --limit"
    assert loaded.config.agent.name == "from-env"


def test_named_flag_beats_set_flag() -> None:
    flags = FlagOverrides(
        settings=(FlagSetting("agent.name", "named", "--name"),),
        assignments=("agent.name=from-set", "agent.max_polls=4"),
    )
    loaded = load_config([], flags, {})
    assert loaded.config.agent.name == "named"
    assert loaded.config.agent.max_polls == 4
    assert loaded.origins["agent.max_polls"] == "flag --set"


def test_additive_flags_add_to_lower_sources(write_toml: WriteToml) -> None:
    path = write_toml("agent.toml", '[agent]\nlabels = ["f"]\n[runs]\nimport_paths = ["/a"]\nenv = { A = "1" }\n')
    flags = FlagOverrides(labels=("cli", "f"), env=("B=2", "C=x=y"), import_paths=("/b",))
    loaded = load_config([path], flags, {"LOCALAGENT_RUNS__ENV__A": "env"})
    assert loaded.config.agent.labels == ("f", "cli")  # duplicates collapse, order kept
    assert loaded.config.runs.env == {"A": "env", "B": "2", "C": "x=y"}
    assert loaded.config.runs.import_paths == ("/a", "/b")
    assert loaded.origins["agent.labels"] == f"{path}:2 + flag --label"
    assert loaded.origins["runs.env.B"] == "flag --env"


def test_set_replaces_arrays_and_parses_toml_values() -> None:
    flags = FlagOverrides(assignments=('agent.labels=["x", "y"]', "agent.hostname_label=false", "logs.level=debug"))
    loaded = load_config([], flags, {})
    assert loaded.config.agent.labels == ("x", "y")
    assert loaded.config.agent.hostname_label is False
    assert loaded.config.logs.level == "DEBUG"


def test_text_fields_keep_text_that_toml_would_turn_into_numbers() -> None:
    environ = {"LOCALAGENT_AGENT__NAME": "123", "LOCALAGENT_RUNS__ENV__PORT": "8080"}
    loaded = load_config([], FlagOverrides(assignments=("server.database=1",)), environ)
    assert loaded.config.agent.name == "123"
    assert loaded.config.runs.env == {"PORT": "8080"}
    assert loaded.config.server.database == "1"


def test_unrelated_localagent_variables_are_ignored() -> None:
    loaded = load_config([], environ={"LOCALAGENT_API_URL": "http://x:1", "LOCALAGENT_API_KEY": "k"})
    assert loaded.config.api.url == "embedded"


def test_state_dir_default_follows_the_captured_environment(tmp_path: Path) -> None:
    loaded = load_config([], environ={"XDG_STATE_HOME": str(tmp_path)})
    assert loaded.config.agent.state_dir == tmp_path / "localagent"


def test_interpolation_uses_the_given_environment(write_toml: WriteToml) -> None:
    path = write_toml("agent.toml", '[agent]\nname = "${WHO:-nobody}-${SITE}"\n[runs.env]\nP = "a$$b"\n')
    loaded = load_config([path], environ={"SITE": "paris"})
    assert loaded.config.agent.name == "nobody-paris"
    assert loaded.config.runs.env == {"P": "a$b"}


def test_api_key_from_key_file_is_read_at_every_load(write_toml: WriteToml, tmp_path: Path) -> None:
    key_file = tmp_path / "api.key"
    key_file.write_text("first\n")
    path = write_toml("agent.toml", f'[api]\nkey_file = "{key_file}"\n')
    first = load_config([path], environ={})
    key_file.write_text("  second  \n")
    second = load_config([path], environ={})
    assert (first.api_key, second.api_key) == ("first", "second")
    assert first.hash != second.hash  # a rotated key is a config change


def test_literal_key_wins_over_key_file(write_toml: WriteToml) -> None:
    path = write_toml("agent.toml", '[api]\nkey = "${TOKEN}"\nkey_file = "/nonexistent/key"\n')
    loaded = load_config([path], environ={"TOKEN": "s3cret"})
    assert loaded.api_key == "s3cret"


def test_hash_is_stable_and_changes_with_content(write_toml: WriteToml) -> None:
    path = write_toml("agent.toml", '[agent]\nname = "a"\n')
    same = load_config([path], environ={}).hash == load_config([path], environ={}).hash
    other = load_config([path], FlagOverrides(labels=("x",)), {}).hash
    assert same
    assert other != load_config([path], environ={}).hash


def test_public_hash_leaves_secrets_out(write_toml: WriteToml) -> None:
    path = write_toml(
        "agent.toml",
        '[api]\nkey = "${TOKEN}"\n[runs.env]\nDB_PASSWORD = "${PW}"\nTZ = "UTC"\n'
        '[server]\ndatabase = "postgresql://app:${PW}@db/la"\n',
    )
    weak = load_config([path], environ={"TOKEN": "1234", "PW": "a"})
    strong = load_config([path], environ={"TOKEN": "9f8e7d6c5b4a", "PW": "b"})
    assert weak.hash != strong.hash  # inside the process a rotated secret is a change
    assert public_hash(weak) == public_hash(strong)  # what is shown and reported cannot reveal them
    other_tz = write_toml("other.toml", '[api]\nkey = "1234"\n[runs.env]\nTZ = "CET"\n')
    assert public_hash(load_config([other_tz], environ={})) != public_hash(weak)
