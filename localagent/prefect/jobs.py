"""A Prefect flow run, seen as a localagent run: its job variables turned into a command, env and working dir.

Usage::

    variables = job_variables(pool, deployment, flow_run)     # base template defaults < deployment < run
    claimed = claimed_run(flow_run, flow_name, variables, settings, api_url=rest.url, key=rest.key)
    # RunExecution starts claimed.flow.command in claimed.flow.run_config.working_dir with its env

Like Prefect's process worker: the deployment's ``command`` job variable (split like a shell would, never run
by one) or else ``prefect.command`` (``python -m prefect.engine``, which runs the deployment's pull steps
itself and then the flow); ``env`` and ``working_dir`` from the job variables. The reserved variables
``PREFECT_API_URL``, ``PREFECT_API_KEY`` (``PREFECT_API_AUTH_STRING`` with ``prefect.auth = "basic"``) and
``PREFECT__FLOW_RUN_ID`` win over the
job's ``env``; the run's environment is otherwise built like any localagent run's (``runs.env`` below the
job's ``env``). A job variable left at a template literal (``"{{ env }}"``) is taken from the variables; a
hard-coded literal in the pool's ``job_configuration`` wins, as Prefect renders it.
"""

from __future__ import annotations

import re
import shlex
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from localagent.api.models import ClaimedRun, Flow, FlowRun, RunConfig, StateName
from localagent.errors import LaunchError

if TYPE_CHECKING:
    from localagent.config.model import PrefectSection

JSONDict = dict[str, Any]
RUN_CONFIG_TYPE = "prefect-process"
RUN_TOKEN_PREFIX = "prefect-run:"  # a run's "token": Prefect has none; the agent's key serves every run
_PLACEHOLDER = re.compile(r"^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")


def _nullable(kind: str, title: str, description: str) -> JSONDict:
    return {"anyOf": [{"type": kind}, {"type": "null"}], "default": None, "title": title, "description": description}


# What `prefect work-pool create --type process` stores, so Prefect's UI and its own worker can use a pool
# that localagent created.
PROCESS_BASE_JOB_TEMPLATE: JSONDict = {
    "job_configuration": {
        "command": "{{ command }}",
        "env": "{{ env }}",
        "labels": "{{ labels }}",
        "name": "{{ name }}",
        "stream_output": "{{ stream_output }}",
        "working_dir": "{{ working_dir }}",
    },
    "variables": {
        "type": "object",
        "properties": {
            "name": _nullable("string", "Name", "Name given to infrastructure created by a worker."),
            "env": {
                "title": "Environment Variables",
                "description": "Environment variables to set when starting a flow run.",
                "type": "object",
                "additionalProperties": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
            "labels": {
                "title": "Labels",
                "description": "Labels applied to infrastructure created by a worker.",
                "type": "object",
                "additionalProperties": {"type": "string"},
            },
            "command": _nullable("string", "Command", "The command to use when starting a flow run."),
            "stream_output": {
                "title": "Stream Output",
                "description": "Workers stream flow run output to their standard output.",
                "type": "boolean",
                "default": True,
            },
            "working_dir": {
                **_nullable("string", "Working Directory", "Working directory of flow run processes."),
                "anyOf": [{"type": "string", "format": "path"}, {"type": "null"}],
            },
        },
    },
}


def job_variables(pool: JSONDict, deployment: JSONDict | None, flow_run: JSONDict) -> JSONDict:
    """The run's job variables: the pool template's defaults < the deployment's < the run's own."""
    template = pool.get("base_job_template") or {}
    properties = (template.get("variables") or {}).get("properties") or {}
    values: JSONDict = {name: spec["default"] for name, spec in properties.items() if "default" in spec}
    values.update((deployment or {}).get("job_variables") or {})
    values.update(flow_run.get("job_variables") or {})
    configuration = template.get("job_configuration") or {}
    for key, shape in configuration.items():
        if isinstance(shape, str) and (placeholder := _PLACEHOLDER.match(shape)):
            if placeholder.group(1) != key and placeholder.group(1) in values:
                values[key] = values[placeholder.group(1)]
        elif shape is not None and not isinstance(shape, str):
            values[key] = shape  # a literal the pool's template fixes for every run
    return values


def run_command(variables: JSONDict, settings: PrefectSection) -> list[str]:
    """argv of the run: the ``command`` job variable split like a shell, else ``prefect.command``."""
    command = variables.get("command")
    if command is None or (isinstance(command, str) and not command.strip()):
        return list(settings.command)
    if not isinstance(command, str):
        raise LaunchError(f"job variable command must be a string, got {type(command).__name__}")
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise LaunchError(f"job variable command {command!r} cannot be split into arguments: {exc}") from exc
    return argv


def run_environment(
    variables: JSONDict, *, flow_run_id: str, api_url: str, key: str | None, auth: str = "bearer"
) -> dict[str, str]:
    """The job's ``env`` (``None`` values dropped, values as text), then the reserved ``PREFECT_*`` variables."""
    env_value = variables.get("env") or {}
    if not isinstance(env_value, dict):
        raise LaunchError(f"job variable env must be a table of strings, got {type(env_value).__name__}")
    env = {str(name): str(value) for name, value in env_value.items() if value is not None}
    env["PREFECT_API_URL"] = api_url
    if key:
        env["PREFECT_API_AUTH_STRING" if auth == "basic" else "PREFECT_API_KEY"] = key
    env["PREFECT__FLOW_RUN_ID"] = flow_run_id
    return env


def claimed_run(
    flow_run: JSONDict,
    flow_name: str,
    variables: JSONDict,
    settings: PrefectSection,
    *,
    api_url: str,
    key: str | None,
    auth: str = "bearer",
) -> ClaimedRun:
    """The flow run as the agent's :class:`RunExecution` takes it; raises :class:`LaunchError` when it cannot."""
    run_id = str(flow_run["id"])
    working_dir = variables.get("working_dir")
    config = RunConfig.model_construct(
        type="local",
        env=run_environment(variables, flow_run_id=run_id, api_url=api_url, key=key, auth=auth),
        working_dir=str(working_dir) if working_dir else None,
        labels=[],
    )
    now = datetime.now(timezone.utc)
    # model_construct: Prefect's names (spaces, any character) are not localagent's flow names, and these
    # models never go on the wire; they only carry the run to RunExecution.
    flow = Flow.model_construct(
        name=flow_name,
        command=run_command(variables, settings),
        run_config=config,
        parameters={},
        labels=[],
        retries=0,
        retry_delay=0.0,
        timeout=None,
        version=1,
        created=now,
    )
    run = FlowRun.model_construct(
        id=run_id,
        name=str(flow_run.get("name") or run_id),
        flow=flow_name,
        flow_version=1,
        parameters=flow_run.get("parameters") or {},
        labels=[],
        run_config_type=RUN_CONFIG_TYPE,
        scheduled_start=now,
        state=StateName.SUBMITTED,
        state_message="",
        history=[],
        attempt=int(flow_run.get("run_count") or 0) + 1,
        agent_id=None,
        agent_name=None,
        pid=None,
        exit_code=None,
        created=now,
        updated=now,
        started=None,
        ended=None,
    )
    return ClaimedRun.model_construct(run=run, flow=flow, token=RUN_TOKEN_PREFIX + run_id, next_log_seq=0)
