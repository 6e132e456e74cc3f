"""The launcher: environment precedence, PYTHONPATH, working-dir rules, reserved variables, checks."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from localagent.agent.run.launcher import build_environment, plan_launch, resolve_working_dir
from localagent.config.model import AgentConfig
from localagent.errors import LaunchError
from tests.agent.run_factory import make_claimed

API = "http://127.0.0.1:4300"
AGENT_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/home/op",
    "LANG": "C.UTF-8",
    "SHARED": "agent",
    "AGENT_ONLY": "1",
    "PYTHONPATH": "/existing/a:/existing/b",
    "LOCALAGENT_API_KEY": "agent-secret",
    "LOCALAGENT_API__KEY": "agent-secret-2",
}


def config(**runs: Any) -> AgentConfig:
    return AgentConfig.model_validate({"runs": runs})


def test_precedence_agent_env_then_runs_env_then_run_config_env_then_reserved(tmp_path: Path) -> None:
    claimed = make_claimed(
        run_config={
            "env": {"SHARED": "flow", "FLOW_ONLY": "f", "LOCALAGENT_FLOW_RUN_ID": "spoofed"},
        },
        parameters={"day": "today", "n": 3},
    )
    cfg = config(env={"SHARED": "runs", "RUNS_ONLY": "r", "AGENT_ONLY": "runs"})
    env = build_environment(claimed, cfg, cwd=str(tmp_path), api_url=API, agent_env=AGENT_ENV)
    assert env["SHARED"] == "flow"  # run config > runs.env > agent env
    assert env["AGENT_ONLY"] == "runs"  # runs.env > agent env
    assert env["RUNS_ONLY"] == "r"
    assert env["FLOW_ONLY"] == "f"
    assert env["HOME"] == "/home/op"
    # reserved variables win over everything, and carry the run token, never the agent's key
    assert env["LOCALAGENT_FLOW_RUN_ID"] == "run-1"
    assert env["LOCALAGENT_API_URL"] == API
    assert env["LOCALAGENT_API_TOKEN"] == "run-token-1"
    assert env["LOCALAGENT_FLOW_RUN_NAME"] == "brave-fox"
    assert env["LOCALAGENT_FLOW_NAME"] == "hello"
    assert json.loads(env["LOCALAGENT_PARAMETERS"]) == {"day": "today", "n": 3}
    assert "LOCALAGENT_API_KEY" not in env
    assert "LOCALAGENT_API__KEY" not in env
    assert "agent-secret" not in env.values()


def test_pythonpath_is_working_dir_then_import_paths_then_existing(tmp_path: Path) -> None:
    cfg = config(import_paths=["/lib/one", "/lib/two"])
    env = build_environment(make_claimed(), cfg, cwd=str(tmp_path), api_url=API, agent_env=AGENT_ENV)
    assert env["PYTHONPATH"].split(os.pathsep) == [str(tmp_path), "/lib/one", "/lib/two", "/existing/a", "/existing/b"]


def test_pythonpath_from_runs_env_beats_the_computed_one(tmp_path: Path) -> None:
    cfg = config(import_paths=["/lib/one"], env={"PYTHONPATH": "/mine"})
    env = build_environment(make_claimed(), cfg, cwd=str(tmp_path), api_url=API, agent_env=AGENT_ENV)
    assert env["PYTHONPATH"] == "/mine"


def test_no_inherit_env_keeps_a_minimal_environment(tmp_path: Path) -> None:
    cfg = config(inherit_env=False)
    env = build_environment(make_claimed(), cfg, cwd=str(tmp_path), api_url=API, agent_env=AGENT_ENV)
    assert env["PATH"] == "/usr/bin:/bin"
    assert env["HOME"] == "/home/op"
    assert env["LANG"] == "C.UTF-8"
    assert "SHARED" not in env and "AGENT_ONLY" not in env
    assert env["PYTHONPATH"] == str(tmp_path)  # the agent's PYTHONPATH is not inherited either


def test_working_dir_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    local = make_claimed(run_config={"type": "local", "working_dir": "~/flows"})
    universal = make_claimed(run_config={"type": "universal", "working_dir": "/ignored"})
    assert resolve_working_dir(local, config(working_dir="/srv/runs")) == str(tmp_path / "flows")
    assert resolve_working_dir(universal, config(working_dir="/srv/runs")) == "/srv/runs"
    assert resolve_working_dir(universal, config(), agent_cwd="/agent/cwd") == "/agent/cwd"
    assert resolve_working_dir(make_claimed(run_config={"type": "local"}), config(), agent_cwd="/a") == "/a"


def test_missing_working_dir_is_a_launch_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    claimed = make_claimed(run_config={"type": "local", "working_dir": str(missing)})
    with pytest.raises(LaunchError) as caught:
        plan_launch(claimed, config(), api_url=API, agent_env=AGENT_ENV, hostname="h1")
    assert str(caught.value) == f"working_dir {missing} does not exist on host h1"


def test_working_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    claimed = make_claimed(run_config={"type": "local", "working_dir": str(tmp_path / "file")})
    with pytest.raises(LaunchError, match="is not a directory on host h1"):
        plan_launch(claimed, config(), api_url=API, agent_env=AGENT_ENV, hostname="h1")


def test_unknown_command_is_a_launch_error_with_the_path(tmp_path: Path) -> None:
    claimed = make_claimed(["nosuch-program-xyz", "arg"])
    with pytest.raises(LaunchError) as caught:
        plan_launch(claimed, config(working_dir=tmp_path), api_url=API, agent_env=AGENT_ENV, hostname="h1")
    assert str(caught.value) == "command 'nosuch-program-xyz' not found on host h1 (PATH=/usr/bin:/bin)"


def test_command_is_searched_in_the_runs_path(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "mytool"
    tool.write_text("#!/bin/sh\necho hi\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    claimed = make_claimed(["mytool"], run_config={"env": {"PATH": f"{bin_dir}:/usr/bin:/bin"}})
    plan = plan_launch(claimed, config(working_dir=tmp_path), api_url=API, agent_env=AGENT_ENV, hostname="h1")
    assert plan.executable == str(tool)
    assert plan.argv == ("mytool",)
    assert plan.cwd == str(tmp_path)


def test_relative_path_command_resolves_in_the_working_dir(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    claimed = make_claimed(["./run.sh"])
    with pytest.raises(LaunchError, match=r"command './run.sh' is not executable on host h1"):
        plan_launch(claimed, config(working_dir=tmp_path), api_url=API, agent_env=AGENT_ENV, hostname="h1")
    script.chmod(0o755)
    plan = plan_launch(claimed, config(working_dir=tmp_path), api_url=API, agent_env=AGENT_ENV, hostname="h1")
    assert plan.executable == str(script)


def test_string_command_runs_under_sh(tmp_path: Path) -> None:
    plan = plan_launch(
        make_claimed("echo $HOME | tr a-z A-Z"),
        config(working_dir=tmp_path),
        api_url=API,
        agent_env=AGENT_ENV,
        hostname="h1",
    )
    assert plan.argv == ("/bin/sh", "-c", "echo $HOME | tr a-z A-Z")
    assert plan.executable == "/bin/sh"
