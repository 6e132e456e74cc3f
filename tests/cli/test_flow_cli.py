"""``localagent flow ...`` through the installed binary against the real API server."""

from __future__ import annotations

import json
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from localagent.api.client import ApiClient
from localagent.api.flowfile import flows_json_schema
from localagent.api.models import FlowSpec
from tests.cli.api_cli_support import cli, cli_json

REPO = Path(__file__).resolve().parents[2]

FLOWS_TOML = """\
#:schema ./schemas/flows.schema.json
[[flow]]
name = "nightly-report"
command = ["python", "report.py"]
labels = ["etl"]
retries = 2
retry_delay = "1m"
timeout = "30m"
parameters = { day = "today" }
run_config = { type = "local", working_dir = "/srv/reports", env = { TZ = "UTC" } }

[[flow]]
name = "hello"
command = "echo hello"
"""


def test_register_prints_created_unchanged_updated(api_server: Any) -> None:
    url = api_server.url
    first = cli(url, "flow", "register", "hello", "--command", "echo hi; exit 3", "--label", "etl")
    again = cli(url, "flow", "register", "hello", "--command", "echo hi; exit 3", "--label", "etl")
    changed = cli(url, "flow", "register", "hello", "--command", "echo bye", "--label", "etl")
    assert (first.returncode, again.returncode, changed.returncode) == (0, 0, 0)
    assert first.stdout.strip() == "created flow 'hello' (version 1)"
    assert again.stdout.strip() == "unchanged flow 'hello' (version 1)"
    assert changed.stdout.strip() == "updated flow 'hello': version 1 -> 2"


def test_register_builds_the_flow_from_every_flag(api_server: Any) -> None:
    flow = cli_json(
        api_server.url,
        "flow", "register", "report",
        "-c", "python", "-c", "report.py",
        "--working-dir", "/does/not/exist/here",
        "--env", "TZ=UTC", "--env", "EXPR=a=b",
        "--param", "n=3", "--param", "day=today", "--param", "xs=[1, 2]",
        "--label", "etl", "--label", "gpu",
        "--retries", "2", "--retry-delay", "1m", "--timeout", "1h30m",
    )  # fmt: skip
    assert flow["command"] == ["python", "report.py"]
    assert flow["run_config"] == {
        "type": "local",
        "env": {"TZ": "UTC", "EXPR": "a=b"},
        "working_dir": "/does/not/exist/here",
        "labels": [],
    }
    assert flow["parameters"] == {"n": 3, "day": "today", "xs": [1, 2]}
    assert flow["labels"] == ["etl", "gpu"]
    assert (flow["retries"], flow["retry_delay"], flow["timeout"]) == (2, 60.0, 5400.0)
    universal = cli_json(api_server.url, "flow", "register", "plain", "--command", "true")
    assert universal["run_config"]["type"] == "universal"
    assert universal["command"] == "true"


def test_register_bad_flags_are_usage_errors(api_server: Any) -> None:
    url = api_server.url
    for args, where in [
        (["flow", "register", "bad name", "-c", "x"], "NAME"),
        (["flow", "register", "ok", "-c", "x", "--env", "NOEQUALS"], "--env"),
        (["flow", "register", "ok", "-c", "x", "--retry-delay", "soon"], "--retry-delay"),
        (["flow", "register", "ok", "-c", "x", "--working-dir", "/x", "--run-config", "universal"], "--working-dir"),
        (["flow", "register", "ok"], "--command"),
    ]:
        result = cli(url, *args)
        assert result.returncode == 2, args
        assert where in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    with ApiClient(url) as api:
        assert api.list_flows() == []


def test_ls_table_and_json(api_server: Any) -> None:
    url = api_server.url
    with ApiClient(url) as api:
        api.register_flow(FlowSpec(name="alpha", command="echo a", labels=["etl"], timeout="30m"))
        api.register_flow(FlowSpec(name="beta", command=["python", "my script.py"]))
    table = cli(url, "flow", "ls")
    assert table.returncode == 0
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["NAME", "VERSION", "COMMAND", "RUN", "CONFIG", "LABELS", "RETRIES", "TIMEOUT", "CREATED"]
    by_name = {row.split()[0]: row for row in rows}
    assert set(by_name) == {"alpha", "beta"}
    assert "echo a" in by_name["alpha"]
    assert "1800s" in by_name["alpha"]
    assert "python 'my script.py'" in by_name["beta"]
    assert header.index("COMMAND") == by_name["beta"].index("python")  # columns are aligned
    flows = cli_json(url, "flow", "ls")
    assert sorted(flow["name"] for flow in flows) == ["alpha", "beta"]
    assert {"name", "version", "command", "run_config", "labels", "retries", "created"} <= set(flows[0])


def test_show_a_flow_and_an_old_version(api_server: Any) -> None:
    url = api_server.url
    with ApiClient(url) as api:
        api.register_flow(FlowSpec(name="hello", command="echo one"))
        api.register_flow(FlowSpec(name="hello", command="echo two"))
    latest = cli(url, "flow", "show", "hello")
    assert "version:    2" in latest.stdout
    assert "echo two (run by /bin/sh -c)" in latest.stdout
    assert cli_json(url, "flow", "show", "hello", "--version", "1")["command"] == "echo one"


def test_apply_reports_each_flow_and_is_idempotent(api_server: Any, tmp_path: Path) -> None:
    flows = tmp_path / "flows.toml"
    flows.write_text(FLOWS_TOML)
    first = cli(api_server.url, "flow", "apply", "-f", str(flows))
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "created flow 'nightly-report' (version 1)",
        "created flow 'hello' (version 1)",
    ]
    flows.write_text(FLOWS_TOML.replace('"echo hello"', '"echo hello world"'))
    second = cli_json(api_server.url, "flow", "apply", "-f", str(flows))
    assert second == [
        {"name": "nightly-report", "version": 1, "outcome": "unchanged"},
        {"name": "hello", "version": 2, "outcome": "updated"},
    ]
    with ApiClient(api_server.url) as api:
        report = api.get_flow("nightly-report").model_dump()
    assert report["run_config"]["working_dir"] == "/srv/reports"
    assert (report["retry_delay"], report["timeout"]) == (60.0, 1800.0)


def test_apply_with_errors_names_file_line_and_key_and_registers_nothing(api_server: Any, tmp_path: Path) -> None:
    flows = tmp_path / "flows.toml"
    flows.write_text(FLOWS_TOML.replace("retries = 2", "retries = -1").replace('command = "echo hello"', "cmd = 1"))
    result = cli(api_server.url, "flow", "apply", "-f", str(flows))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"ConfigError: {flows}:6: flow['nightly-report'].retries: must be >= 0, got -1",
        f"{flows}:12: flow['hello'].command: required",
        f"{flows}:14: flow['hello'].cmd: unknown key",
    ]
    with ApiClient(api_server.url) as api:
        assert api.list_flows() == []


def test_apply_toml_syntax_error_keeps_line_and_column(api_server: Any, tmp_path: Path) -> None:
    flows = tmp_path / "flows.toml"
    flows.write_text('[[flow]]\nname = "x"\ncommand = oops\n')
    result = cli(api_server.url, "flow", "apply", "-f", str(flows))
    assert result.returncode == 1
    assert result.stderr == f"ConfigError: {flows}:3:11: invalid TOML: Invalid value\n"
    missing = cli(api_server.url, "flow", "apply", "-f", str(tmp_path / "nope.toml"))
    assert missing.returncode == 1
    assert "cannot read the file" in missing.stderr


def test_run_prints_the_new_run_id(api_server: Any) -> None:
    url = api_server.url
    with ApiClient(url) as api:
        api.register_flow(FlowSpec(name="hello", command="echo hi", parameters={"day": "today"}))
    result = cli(url, "flow", "run", "hello", "--param", "n=3", "--label", "extra")
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip()
    with ApiClient(url) as api:
        run = api.get_run(run_id)
    assert run.state.value == "Scheduled"
    assert run.parameters == {"day": "today", "n": 3}
    assert run.labels == ["extra"]


def test_run_at_a_relative_and_an_iso_time(api_server: Any) -> None:
    url = api_server.url
    with ApiClient(url) as api:
        api.register_flow(FlowSpec(name="hello", command="echo hi"))
    before = datetime.now(timezone.utc)
    later = cli_json(url, "flow", "run", "hello", "--at", "+5m")
    start = datetime.fromisoformat(later["scheduled_start"].replace("Z", "+00:00"))
    assert before + timedelta(minutes=4) < start < before + timedelta(minutes=6)
    exact = cli_json(url, "flow", "run", "hello", "--at", "2030-01-02T03:04:05Z")
    assert datetime.fromisoformat(exact["scheduled_start"].replace("Z", "+00:00")) == datetime(
        2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc
    )
    bad = cli(url, "flow", "run", "hello", "--at", "tomorrow")
    assert bad.returncode == 2
    assert "--at" in bad.stderr


def test_unknown_flow_is_one_line_on_stderr(api_server: Any) -> None:
    result = cli(api_server.url, "flow", "run", "nope")
    assert result.returncode == 1
    assert result.stderr == "ApiNotFound: flow 'nope' not found\n"
    assert result.stdout == ""


def test_unreachable_api_says_what_to_do() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = cli(url, "flow", "ls")
    assert result.returncode == 1
    assert result.stderr.startswith(f"ApiUnavailable: cannot reach the API at {url}: connection refused")
    assert "localagent server" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_a_missing_key_gets_a_hint(make_api_server: Any) -> None:
    server = make_api_server(api_keys=("sekrit",))
    refused = cli(server.url, "flow", "ls")
    assert refused.returncode == 1
    assert refused.stderr.startswith("ApiUnauthorized: ")
    assert "pass --key or set LOCALAGENT_API_KEY" in refused.stderr
    wrong = cli(server.url, "flow", "ls", "--key", "nope")
    assert "check --key" in wrong.stderr
    assert cli(server.url, "flow", "ls", key="sekrit").stdout.split() == [
        "NAME",
        "VERSION",
        "COMMAND",
        "RUN",
        "CONFIG",
        "LABELS",
        "RETRIES",
        "TIMEOUT",
        "CREATED",
    ]


def test_flows_schema_file_is_in_sync() -> None:
    committed = json.loads((REPO / "schemas" / "flows.schema.json").read_text())
    assert committed == flows_json_schema(), "regenerate: localagent flow schema > schemas/flows.schema.json"
    printed = cli("http://127.0.0.1:9", "flow", "schema")
    assert json.loads(printed.stdout) == committed
