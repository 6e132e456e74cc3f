"""A Prefect flow run's job variables become the run's command, environment and working directory."""

from __future__ import annotations

import pytest

from localagent.config.model import PrefectSection
from localagent.errors import LaunchError
from localagent.prefect.jobs import PROCESS_BASE_JOB_TEMPLATE, claimed_run, job_variables, run_command
from localagent.prefect.rest import authorization, prefect_api_url

POOL = {"id": "p", "base_job_template": PROCESS_BASE_JOB_TEMPLATE}


def test_job_variables_layer_template_defaults_then_deployment_then_run() -> None:
    deployment = {"job_variables": {"env": {"A": "deployment", "B": "deployment"}, "working_dir": "/srv/d"}}
    flow_run = {"id": "r", "job_variables": {"env": {"A": "run"}}}
    variables = job_variables(POOL, deployment, flow_run)
    assert variables["env"] == {"A": "run"}  # a table replaces, as Prefect merges job variables
    assert variables["working_dir"] == "/srv/d"
    assert variables["stream_output"] is True  # the template's default
    assert variables["command"] is None


def test_a_literal_in_the_pools_job_configuration_wins() -> None:
    template = {
        "job_configuration": {"command": "{{ command }}", "working_dir": "{{ where }}", "stream_output": False},
        "variables": {"properties": {"where": {"default": "/srv/fixed"}}},
    }
    variables = job_variables({"base_job_template": template}, None, {"id": "r"})
    assert variables["working_dir"] == "/srv/fixed"
    assert variables["stream_output"] is False


def test_the_command_is_split_like_a_shell_and_defaults_to_prefect_command() -> None:
    settings = PrefectSection(command=("/venv/bin/python", "-m", "prefect.engine"))
    assert run_command({"command": None}, settings) == ["/venv/bin/python", "-m", "prefect.engine"]
    assert run_command({"command": "python -c 'print(1)'"}, settings) == ["python", "-c", "print(1)"]
    with pytest.raises(LaunchError, match="cannot be split"):
        run_command({"command": "python -c 'unclosed"}, settings)


def test_reserved_prefect_variables_win_over_the_jobs_env() -> None:
    variables = {"env": {"PREFECT_API_URL": "http://elsewhere/api", "GREETING": "hi", "DROPPED": None}}
    claimed = claimed_run(
        {"id": "run-1", "name": "brave-fox", "parameters": {"x": 1}},
        "my flow",
        variables,
        PrefectSection(),
        api_url="http://127.0.0.1:4200/api",
        key="secret",
    )
    env = claimed.flow.run_config.env
    assert env == {
        "GREETING": "hi",
        "PREFECT_API_URL": "http://127.0.0.1:4200/api",
        "PREFECT_API_KEY": "secret",
        "PREFECT__FLOW_RUN_ID": "run-1",
    }
    assert claimed.flow.command == ["python", "-m", "prefect.engine"]
    assert (claimed.run.name, claimed.run.flow, claimed.run.parameters) == ("brave-fox", "my flow", {"x": 1})


def test_the_api_url_gets_its_api_path_when_given_bare() -> None:
    assert prefect_api_url("http://127.0.0.1:4200") == "http://127.0.0.1:4200/api"
    assert prefect_api_url("http://127.0.0.1:4200/api/") == "http://127.0.0.1:4200/api"
    assert prefect_api_url("https://api.prefect.cloud/api/accounts/a/workspaces/w") == (
        "https://api.prefect.cloud/api/accounts/a/workspaces/w"
    )


def test_basic_auth_reaches_the_run_as_its_auth_string_and_the_server_as_http_basic() -> None:
    claimed = claimed_run(
        {"id": "run-2"}, "f", {}, PrefectSection(auth="basic"), api_url="http://h/api", key="admin:pw", auth="basic"
    )
    env = claimed.flow.run_config.env
    assert env["PREFECT_API_AUTH_STRING"] == "admin:pw"
    assert "PREFECT_API_KEY" not in env
    assert authorization("admin:pw", "basic") == "Basic YWRtaW46cHc="
    assert authorization("pnu_key", "bearer") == "Bearer pnu_key"
