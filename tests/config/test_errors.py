"""Every bad input ends in a ConfigError whose lines name the file, line and key (or variable or flag)."""

from __future__ import annotations

from pathlib import Path

import pytest

from localagent.config import FlagOverrides, FlagSetting, load_config
from localagent.errors import ConfigError
from tests.config.conftest import WriteToml


def problems(files: list[Path], flags: FlagOverrides | None = None, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(files, flags, environ or {})
    return [str(problem) for problem in caught.value.problems]


def test_constraint_error_names_file_line_and_key(write_toml: WriteToml) -> None:
    path = write_toml("agent.toml", "# 1\n# 2\n# 3\n# 4\n\n[agent]\nmax_concurrent_runs = -1\n")
    assert problems([path]) == [f"{path}:7: agent.max_concurrent_runs: must be >= 0, got -1"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"0s"', "must be > 0s, got 0s"),
        ('"-1s"', "must be >= 0s, got -1s"),
        ("-1", "must be >= 0s, got -1s"),
        ('"-1m30s"', "must be >= 0s, got -1m30s"),
    ],
)
def test_a_duration_out_of_range_reads_the_same_however_it_was_spelled(
    write_toml: WriteToml, value: str, expected: str
) -> None:
    path = write_toml("agent.toml", f"[agent]\npoll_interval = {value}\n")
    assert problems([path]) == [f"{path}:2: agent.poll_interval: {expected}"]


def test_file_is_named_as_the_user_wrote_it(write_toml: WriteToml, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_toml("agent.toml", "[agent]\nmax_polls = -3\n")
    monkeypatch.chdir(path.parent)
    assert problems([Path("agent.toml")]) == ["agent.toml:2: agent.max_polls: must be >= 0, got -3"]


def test_unknown_keys_are_named_with_a_suggestion(write_toml: WriteToml) -> None:
    path = write_toml("agent.toml", '[agent]\nnmae = "x"\n[agnet]\nname = "y"\n')
    found = problems([path])
    assert f"{path}:2: agent.nmae: unknown key (did you mean agent.name?)" in found
    assert any(line.startswith(f"{path}:3: agnet: unknown key") for line in found)


def test_syntax_error_keeps_line_and_column(write_toml: WriteToml) -> None:
    path = write_toml("agent.toml", '[agent]\nname = "a"\nmax_polls = = 3\n')
    [found] = problems([path])
    assert found.startswith(f"{path}:3:13: TOML syntax error: invalid value")


def test_duplicate_key_is_a_syntax_error(write_toml: WriteToml) -> None:
    path = write_toml("agent.toml", "[agent]\nmax_polls = 1\n[agent]\n")
    [found] = problems([path])
    assert found.startswith(f"{path}:3:") and "TOML syntax error" in found


def test_missing_file_says_it_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    [found] = problems([missing])
    assert found == f"{missing}: config file does not exist (check the path given to -c/--config)"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    [found] = problems([tmp_path])
    assert "is a directory" in found


def test_missing_variable_names_key_and_variable(write_toml: WriteToml) -> None:
    path = write_toml("agent.toml", '[agent]\nname = "a"\n\n[api]\nkey = "${API_TOKEN}"\n')
    [found] = problems([path])
    assert found.startswith(f"{path}:5: api.key: environment variable API_TOKEN is not set")


def test_type_errors_say_what_was_expected(write_toml: WriteToml) -> None:
    text = '[agent]\nlabels = "a"\nhostname_label = "maybe"\nmax_polls = 1.5\n[logs]\nlevel = "LOUD"\n'
    found = problems([write_toml("agent.toml", text)])
    assert any(line.endswith('agent.labels: expected an array, got "a"') for line in found)
    assert any(line.endswith('agent.hostname_label: expected true or false, got "maybe"') for line in found)
    assert any(line.endswith("agent.max_polls: expected a whole number, got 1.5") for line in found)
    assert any("logs.level: expected one of 'DEBUG', 'INFO'" in line for line in found)


def test_array_element_errors_point_at_the_element(write_toml: WriteToml) -> None:
    path = write_toml("agent.toml", '[runs]\nimport_paths = [\n  "/ok",\n  3,\n]\n')
    assert problems([path]) == [f"{path}:4: runs.import_paths.1: expected a string, got 3"]


def test_environment_errors_name_the_variable() -> None:
    found = problems([], environ={"LOCALAGENT_AGENT__POLL_INTERVAL": "soon", "LOCALAGENT_AGENT__COLOUR": "red"})
    assert (
        "env LOCALAGENT_AGENT__POLL_INTERVAL: agent.poll_interval: expected a duration like '30s', '5m', "
        "'1h30m' or a number of seconds, got 'soon'"
    ) in found
    assert any(line.startswith("env LOCALAGENT_AGENT__COLOUR: agent.colour: unknown key") for line in found)


def test_malformed_variable_name() -> None:
    assert problems([], environ={"LOCALAGENT_AGENT__": "x"}) == [
        "env LOCALAGENT_AGENT__: expected LOCALAGENT_<SECTION>__<KEY>, e.g. LOCALAGENT_AGENT__NAME"
    ]


def test_flag_errors_name_the_flag() -> None:
    flags = FlagOverrides(
        settings=(FlagSetting("agent.max_concurrent_runs", -1, "--limit"),),
        assignments=("noequals", "agent.bogus=1"),
        env=("NOEQUALS",),
    )
    found = problems([], flags)
    assert "flag --limit: agent.max_concurrent_runs: must be >= 0, got -1" in found
    assert "flag --set: expected KEY=VALUE like agent.name=worker-1, got 'noequals'" in found
    assert "flag --env: runs.env: expected KEY=VALUE, got 'NOEQUALS'" in found
    assert any(line.startswith("flag --set: agent.bogus: unknown key") for line in found)


def test_every_problem_is_reported_at_once(write_toml: WriteToml, tmp_path: Path) -> None:
    good = write_toml("a.toml", "[agent]\nmax_polls = -1\n")
    broken = write_toml("b.toml", "[agent\n")
    found = problems([good, broken, tmp_path / "missing.toml"], environ={"LOCALAGENT_LOGS__FORMAT": "xml"})
    assert len(found) == 4


def test_key_file_problems_name_the_file(write_toml: WriteToml, tmp_path: Path) -> None:
    missing = tmp_path / "no.key"
    path = write_toml("agent.toml", f'[api]\nkey_file = "{missing}"\n')
    assert problems([path]) == [f"{path}:2: api.key_file: key file {missing} does not exist"]
    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    assert problems([path], environ={}) != problems([write_toml("b.toml", f'[api]\nkey_file = "{empty}"\n')])
    assert problems([tmp_path / "b.toml"])[0].endswith(f"key file {empty} is empty")


def test_secret_values_are_never_echoed(write_toml: WriteToml) -> None:
    path = write_toml("agent.toml", "[api]\nkey = 12345678\n")
    [found] = problems([path])
    assert "12345678" not in found
    assert found == f"{path}:2: api.key: expected a string"


def test_config_error_message_lists_every_problem(write_toml: WriteToml) -> None:
    path = write_toml("agent.toml", "[agent]\nmax_polls = -1\nmax_concurrent_runs = -1\n")
    with pytest.raises(ConfigError) as caught:
        load_config([path], environ={})
    assert str(caught.value).count("\n") == 1


def test_a_home_that_cannot_be_expanded_is_a_config_error(write_toml: WriteToml) -> None:
    path = write_toml("agent.toml", '[agent]\nstate_dir = "~no-such-user-here/x"\n[runs]\nworking_dir = "~0"\n')
    assert problems([path]) == [
        f"{path}:2: agent.state_dir: cannot expand '~no-such-user-here/x': no home directory for that user",
        f"{path}:4: runs.working_dir: cannot expand '~0': no home directory for that user",
    ]
