"""flows.toml: loading, located errors and the JSON schema editors use."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import pytest

from localagent.api.flowfile import load_flows_file, parse_flows
from localagent.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]

SPEC_EXAMPLE = """\
[[flow]]
name = "nightly-report"
command = ["python", "report.py"]
labels = ["etl"]
retries = 2
retry_delay = "1m"
timeout = "30m"
parameters = { day = "today" }
run_config = { type = "local", working_dir = "/srv/reports", env = { TZ = "UTC" } }
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_flows(text)
    return [str(problem) for problem in caught.value.problems]


def test_the_spec_example_loads() -> None:
    (spec,) = parse_flows(SPEC_EXAMPLE)
    assert spec.command == ["python", "report.py"]
    assert (spec.retry_delay, spec.timeout) == (60.0, 1800.0)
    assert spec.run_config.working_dir == "/srv/reports"
    assert spec.run_config.env == {"TZ": "UTC"}
    assert spec.parameters == {"day": "today"}


def test_an_empty_file_declares_no_flows() -> None:
    assert parse_flows("# nothing yet\n") == []


def test_errors_name_line_and_key_of_each_flow() -> None:
    text = SPEC_EXAMPLE + '\n[[flow]]\nname = "b"\ncommand = 3\n\n[flow.run_config]\ntype = "local"\nworking_dir = 5\n'
    assert problems(text) == [
        "flows.toml:13: flow['b'].command: expected a list of strings (argv) or one string (run by /bin/sh -c)",
        "flows.toml:17: flow['b'].run_config.working_dir: Input should be a valid string",
    ]


def test_inline_table_keys_are_located() -> None:
    text = SPEC_EXAMPLE.replace('working_dir = "/srv/reports"', "working_dir = 7")
    assert problems(text) == [
        "flows.toml:9: flow['nightly-report'].run_config.working_dir: Input should be a valid string"
    ]


def test_duplicate_names_and_unknown_top_level_keys() -> None:
    assert problems(SPEC_EXAMPLE + SPEC_EXAMPLE) == [
        "flows.toml:11: flow[1].name: flow 'nightly-report' is declared twice"
    ]
    assert problems("flows = []\n") == ["flows.toml:1: flows: unknown key; a flows file holds only [[flow]] tables"]


def test_bad_durations_and_names_say_what_is_expected() -> None:
    text = SPEC_EXAMPLE.replace('"1m"', '"soon"').replace('"nightly-report"', '"-bad"')
    assert problems(text) == [
        "flows.toml:2: flow['-bad'].name: must start with a letter or digit and hold only letters, digits, "
        "'.', '_' and '-'",
        "flows.toml:6: flow['-bad'].retry_delay: expected a duration like '30s', '5m', '1h30m' or a number of seconds, "
        "got 'soon'",
    ]


def test_syntax_errors_keep_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "flows.toml"
    path.write_text('[[flow]]\nname = "x"\ncommand = oops\n')
    with pytest.raises(ConfigError) as caught:
        load_flows_file(path)
    assert str(caught.value) == f"{path}:3:11: invalid TOML: Invalid value"


def test_schema_accepts_the_spec_example_and_rejects_mistakes() -> None:
    schema = json.loads((REPO / "schemas" / "flows.schema.json").read_text())
    jsonschema.validate(tomllib.loads(SPEC_EXAMPLE), schema)
    for good, bad in [
        ("retries = 2", 'retries = "two"'),
        ("retries = 2", "retries = -1"),
        ('retry_delay = "1m"', 'retry_delay = "soon"'),
        ("retries = 2", "retries = 2\nbogus = 1"),
        ('"/srv/reports"', "5"),
    ]:
        broken = tomllib.loads(SPEC_EXAMPLE.replace(good, bad))
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)
