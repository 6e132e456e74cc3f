"""``localagent flow run NAME --count N`` and ``--params-file FILE`` through the installed binary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from localagent.api.client import ApiClient
from localagent.api.models import FlowSpec
from tests.cli.api_cli_support import cli, cli_json


def _flow(url: str) -> None:
    with ApiClient(url) as api:
        api.register_flow(FlowSpec(name="resize", command=["true"], parameters={"size": 10}))


def test_count_starts_that_many_runs_and_prints_their_ids(api_server: Any) -> None:
    _flow(api_server.url)
    result = cli(api_server.url, "flow", "run", "resize", "--count", "30", "--param", "size=5")
    assert result.returncode == 0, result.stderr
    ids = result.stdout.split()
    assert len(ids) == 30 == len(set(ids))
    with ApiClient(api_server.url) as api:
        runs = api.list_runs(flow="resize", limit=100)
    assert {run.id for run in runs} == set(ids)
    assert all(run.parameters == {"size": 5} for run in runs)


def test_params_file_makes_one_run_per_line(api_server: Any, tmp_path: Path) -> None:
    _flow(api_server.url)
    path = tmp_path / "runs.jsonl"
    path.write_text('{"image": "a.png"}\n\n{"image": "b.png", "size": 2}\n')
    created = cli_json(api_server.url, "flow", "run", "resize", "--params-file", str(path), "-p", "size=7")
    assert [run["flow"] for run in created] == ["resize", "resize"]
    with ApiClient(api_server.url) as api:
        params = [api.get_run(run["id"]).parameters for run in created]
    assert params == [{"size": 7, "image": "a.png"}, {"size": 2, "image": "b.png"}]


def test_bad_params_file_lines_are_named_and_nothing_is_created(api_server: Any, tmp_path: Path) -> None:
    _flow(api_server.url)
    path = tmp_path / "runs.jsonl"
    path.write_text('{"image": "a.png"}\n[1, 2]\n')
    not_object = cli(api_server.url, "flow", "run", "resize", "--params-file", str(path))
    assert not_object.returncode == 2
    assert f"{path} line 2: each line must be a JSON object of parameters, not list" in not_object.stderr
    path.write_text('{"image": "a.png"}\n{"image": \n')
    not_json = cli(api_server.url, "flow", "run", "resize", "--params-file", str(path))
    assert not_json.returncode == 2 and f"{path} line 2: not JSON" in not_json.stderr
    missing = cli(api_server.url, "flow", "run", "resize", "--params-file", str(tmp_path / "none.jsonl"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr and "none.jsonl" in missing.stderr
    path.write_text(json.dumps({"blob": "x" * 70_000}) + "\n")
    too_big = cli(api_server.url, "flow", "run", "resize", "--params-file", str(path))
    assert too_big.returncode == 2 and f"{path} line 1: " in too_big.stderr
    with ApiClient(api_server.url) as api:  # big defaults: a line is too big only merged, on the server
        api.register_flow(FlowSpec(name="resize", command=["true"], parameters={"a": "x" * 40_000}))
    path.write_text('{"image": "a.png"}\n\n' + json.dumps({"b": "y" * 30_000}) + "\n")
    merged = cli(api_server.url, "flow", "run", "resize", "--params-file", str(path))
    assert merged.returncode != 0
    assert f"{path} line 3.parameters: merged over" in merged.stderr and "no run was created" in merged.stderr
    assert "Traceback" not in merged.stderr
    with ApiClient(api_server.url) as api:
        assert api.list_runs(flow="resize") == []


def test_count_refuses_watch_and_a_params_file(api_server: Any, tmp_path: Path) -> None:
    _flow(api_server.url)
    path = tmp_path / "runs.jsonl"
    path.write_text("{}\n")
    both = cli(api_server.url, "flow", "run", "resize", "--count", "2", "--params-file", str(path))
    assert both.returncode == 2 and "not both" in both.stderr
    watch = cli(api_server.url, "flow", "run", "resize", "--count", "2", "--watch")
    assert watch.returncode == 2 and "--watch follows one run" in watch.stderr
    unknown = cli(api_server.url, "flow", "run", "nope", "--count", "3")
    assert unknown.returncode != 0 and "run 1.flow: flow 'nope' not found (no run was created)" in unknown.stderr
