"""What a claimed run's process looks like on this host: its argv, working directory and environment.

:func:`plan_launch` checks everything that can be checked before the process starts (the working
directory exists, the program resolves) and raises :class:`LaunchError` with a message meant for the
run's state history, such as ``working_dir /srv/x does not exist on host h1``.

Environment, lowest first (PRODUCT.md section 5): the agent's environment if ``runs.inherit_env`` (else a
minimal one) < ``PYTHONPATH`` = working dir + ``runs.import_paths`` + existing < ``runs.env`` < the run
config's ``env`` < the reserved ``LOCALAGENT_*`` variables. The agent's own ``LOCALAGENT_*`` variables
(its API key, its config overrides) are never passed on.

Usage::

    plan = plan_launch(claimed, config, api_url="http://127.0.0.1:4300")
    reaper.spawn(plan.argv, cwd=plan.cwd, env=plan.env, executable=plan.executable)
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from localagent.api.models import ClaimedRun
from localagent.config.model import AgentConfig
from localagent.errors import LaunchError

SHELL = "/bin/sh"
# Kept from the agent's environment when runs.inherit_env is false.
MINIMAL_ENV_KEYS = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
RESERVED_PREFIX = "LOCALAGENT_"


@dataclass(frozen=True)
class LaunchPlan:
    """Everything needed to start one run's process."""

    argv: tuple[str, ...]
    executable: str
    cwd: str
    env: Mapping[str, str]


def plan_launch(
    claimed: ClaimedRun,
    config: AgentConfig,
    *,
    api_url: str,
    agent_env: Mapping[str, str] | None = None,
    agent_cwd: str | None = None,
    hostname: str | None = None,
) -> LaunchPlan:
    """Check the run can start here and describe its process; raises :class:`LaunchError` if it cannot."""
    host = hostname or socket.gethostname()
    cwd = check_working_dir(resolve_working_dir(claimed, config, agent_cwd=agent_cwd), host)
    env = build_environment(claimed, config, cwd=cwd, api_url=api_url, agent_env=agent_env)
    command = claimed.flow.command
    argv: tuple[str, ...] = (SHELL, "-c", command) if isinstance(command, str) else tuple(command)
    executable = resolve_program(argv[0], cwd=cwd, path=env.get("PATH", os.defpath), host=host)
    return LaunchPlan(argv=argv, executable=executable, cwd=cwd, env=env)


def resolve_working_dir(claimed: ClaimedRun, config: AgentConfig, *, agent_cwd: str | None = None) -> str:
    """The run config's ``working_dir`` (type ``local`` only), else ``runs.working_dir``, else the agent's cwd."""
    run_config = claimed.flow.run_config
    chosen: str | None = None
    if run_config.type == "local" and run_config.working_dir:
        chosen = run_config.working_dir
    elif config.runs.working_dir is not None:
        chosen = str(config.runs.working_dir)
    if chosen is None:
        return agent_cwd or os.getcwd()
    path = os.path.expanduser(chosen)
    if not os.path.isabs(path):
        path = os.path.join(agent_cwd or os.getcwd(), path)
    return os.path.normpath(path)


def check_working_dir(path: str, host: str) -> str:
    if not os.path.exists(path):
        raise LaunchError(f"working_dir {path} does not exist on host {host}")
    if not os.path.isdir(path):
        raise LaunchError(f"working_dir {path} is not a directory on host {host}")
    if not os.access(path, os.X_OK):
        raise LaunchError(f"working_dir {path} is not accessible on host {host}")
    return path


def resolve_program(program: str, *, cwd: str, path: str, host: str) -> str:
    """The absolute path that will be executed for ``program`` (argv[0]), searched in the run's ``PATH``."""
    if "/" in program:
        candidate = os.path.normpath(os.path.join(cwd, os.path.expanduser(program)))
        if not os.path.exists(candidate):
            raise LaunchError(f"command {program!r} not found on host {host} (no such file {candidate})")
        if os.path.isdir(candidate) or not os.access(candidate, os.X_OK):
            raise LaunchError(f"command {program!r} is not executable on host {host} ({candidate})")
        return candidate
    found = shutil.which(program, path=path)
    if found is None:
        raise LaunchError(f"command {program!r} not found on host {host} (PATH={path})")
    return os.path.normpath(os.path.join(cwd, found))


def build_environment(
    claimed: ClaimedRun,
    config: AgentConfig,
    *,
    cwd: str,
    api_url: str,
    agent_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The run's environment, built layer by layer in the documented precedence."""
    source = os.environ if agent_env is None else agent_env
    if config.runs.inherit_env:
        env = {key: value for key, value in source.items() if not key.startswith(RESERVED_PREFIX)}
    else:
        env = {key: source[key] for key in MINIMAL_ENV_KEYS if key in source}
    env.setdefault("PATH", os.defpath)

    python_path = [cwd, *config.runs.import_paths, *env.get("PYTHONPATH", "").split(os.pathsep)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in python_path if p))

    env.update(config.runs.env)
    env.update(claimed.flow.run_config.env)
    run = claimed.run
    env.update(
        {
            "LOCALAGENT_API_URL": api_url,
            "LOCALAGENT_API_TOKEN": claimed.token,
            "LOCALAGENT_FLOW_RUN_ID": run.id,
            "LOCALAGENT_FLOW_RUN_NAME": run.name,
            "LOCALAGENT_FLOW_NAME": run.flow,
            "LOCALAGENT_PARAMETERS": json.dumps(run.parameters, sort_keys=True, default=str),
        }
    )
    return env
