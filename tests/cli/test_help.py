"""Help and error text as a user reads them: plain help, natural metavars, one error style."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer.main

from localagent.api.client import ApiClient
from localagent.api.models import FlowSpec
from localagent.cli.main import app, main, natural_metavars
from tests.cli.api_cli_support import cli


def localagent(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "COLUMNS": "100"}
    return subprocess.run(["localagent", *args], capture_output=True, text=True, cwd=cwd, env=environ, check=False)


def _command_paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, sub in getattr(command, "commands", {}).items():
        paths.extend(_command_paths(sub, (*prefix, name)))
    return paths


def test_top_level_help_starts_here() -> None:
    result = localagent("--help")
    assert result.returncode == 0
    assert "Start here" in result.stdout
    for line in (
        "localagent run -c agent.example.toml",
        "localagent flow register hello --command 'echo hi'",
        "localagent flow run hello --watch",
    ):
        assert f"\n    {line}\n" in result.stdout  # each example on its own line, unwrapped


def test_every_option_metavar_reads_naturally(capsys: pytest.CaptureFixture[str]) -> None:
    command = typer.main.get_command(app)
    natural_metavars(command)
    paths = _command_paths(command)
    assert ("install", "systemd") in paths and ("flow-run", "ls") in paths
    for path in paths:  # in this process (the console script's own entry point): one start-up, not ~40
        main([*path, "--help"])
        shown = capsys.readouterr().out
        assert "Usage: localagent" in shown, path
        odd = re.findall(r"<(?:bool|str|int|path|list\[[^\]]*\]|int range|float)>", shown)
        assert not odd, (path, odd)
        assert "╭" not in shown  # plain help, no boxes
    run_help = localagent("run", "--help").stdout
    for shown in ("-c, --config FILE", "-l, --label LABEL", "-e, --env KEY=VALUE", "--set KEY=VALUE", "--limit N"):
        assert shown in run_help


def test_install_help_shows_the_supervisord_section_literally() -> None:
    assert "Print a supervisord [program:...] section" in localagent("install", "supervisord", "--help").stdout


def test_config_show_sources_credits_the_negative_flag(tmp_path: Path) -> None:
    result = localagent("config", "show", "--sources", "--no-hostname-label", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "hostname_label = false  # flag --no-hostname-label" in result.stdout
    positive = localagent("config", "show", "--sources", "--hostname-label", cwd=tmp_path)
    assert "hostname_label = true  # flag --hostname-label" in positive.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("flow", "ls", "--bogus"), "UsageError: No such option: --bogus (see 'localagent flow ls --help')"),
        (("flow", "run"), "UsageError: Missing argument 'NAME'. (see 'localagent flow run --help')"),
        (("nope",), "UsageError: No such command 'nope'. (see 'localagent --help')"),
    ],
)
def test_usage_errors_are_one_line_like_every_other_error(args: tuple[str, ...], expected: str) -> None:
    result = localagent(*args)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [expected]
    assert result.stdout == ""


def test_other_errors_share_the_style(tmp_path: Path) -> None:
    result = localagent("flow", "ls", "--key", "", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "ConfigError: --key / LOCALAGENT_API_KEY: the API key must not be empty"


def test_a_group_without_a_command_prints_its_help() -> None:
    result = localagent("flow")
    assert "Usage: localagent flow [OPTIONS] COMMAND [ARGS]..." in result.stdout
    assert "register" in result.stdout


def test_labels_print_as_the_docs_write_them(api_server: Any) -> None:
    with ApiClient(api_server.url) as api:
        api.register_flow(FlowSpec(name="alpha", command="echo a", labels=["etl", "gpu"]))
    shown = cli(api_server.url, "flow", "show", "alpha")
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^labels:\s+etl, gpu$", shown.stdout, re.MULTILINE), shown.stdout


def test_the_cli_reference_lists_every_command_and_flag() -> None:
    from localagent.cli.reference import command_paths

    page = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    command = typer.main.get_command(app)
    for path in command_paths(command):
        assert f"## `{' '.join(('localagent', *path))}`" in page, path
        sub = command
        for name in path:
            sub = sub.commands[name]  # type: ignore[attr-defined]
        for param in sub.params:
            for flag in getattr(param, "opts", []):
                if flag.startswith("-"):
                    assert flag in page, (path, flag)  # regenerate: python -m localagent.cli.reference > docs/cli.md


def test_the_health_page_lists_every_agent_metric() -> None:
    from localagent.agent.metrics import AgentMetrics

    page = (Path(__file__).parents[2] / "docs" / "health.md").read_text()
    exposed = re.findall(r"^# TYPE (localagent_\w+) (\w+)$", AgentMetrics().render().decode(), re.MULTILINE)
    names = {name for name, _ in exposed if not name.endswith("_created")}
    assert names
    for name in names:
        assert f"`{name}`" in page or f"`{name}_total`" in page, name
