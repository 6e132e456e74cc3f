"""What a service definition says, derived once from the effective config; renderers only format it.

Usage::

    plan = build_plan(loaded, run_args=["-c", "/etc/localagent/agent.toml"], environ=dict(os.environ),
                      working_dir=Path.cwd())
    render_systemd(plan)       # or render_supervisord(plan)

The plan pins what would otherwise differ between the shell that ran ``localagent install`` and the
service manager's environment: the absolute path of the ``localagent`` executable, the working directory
(relative paths in config files resolve against it), ``agent.state_dir`` when it came from the default
(it depends on ``$HOME``), ``PATH`` (so runs find the same commands) and every
``LOCALAGENT_<SECTION>__<KEY>`` variable that shaped the effective config, except the API key.
"""

from __future__ import annotations

import math
import os
import pwd
import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from localagent.config import LoadedConfig
from localagent.config.sources import ENV_PREFIX
from localagent.errors import ConfigError, ConfigProblem

SHUTDOWN_MARGIN = 45.0
"""Seconds on top of drain_timeout + stop_grace before the service manager may SIGKILL the agent.

After the drain deadline the agent signals its runs, waits ``stop_grace`` for them, then up to another
30 s for their ends to be reported to the API; the margin covers that report and the process exit.
"""

STOP_SIGNAL = "TERM"
"""The agent drains on SIGTERM (a second one stops the runs at once), so that is what stops the service."""

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
SERVICE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ServicePlan:
    """Everything a service definition says about one agent, in neutral (unquoted) form.

    ``argv`` is the whole command, starting with the absolute path of the executable; ``environment``
    is what the service manager must set besides its own; ``stop_timeout`` is whole seconds.
    """

    name: str
    description: str
    argv: tuple[str, ...]
    working_dir: Path
    environment: tuple[tuple[str, str], ...]
    stop_timeout: int
    user: str | None = None
    stop_signal: str = STOP_SIGNAL


def stop_timeout(loaded: LoadedConfig) -> int:
    """Whole seconds the service manager waits after SIGTERM: drain + stop grace + :data:`SHUTDOWN_MARGIN`."""
    runs = loaded.config.runs
    return math.ceil(runs.drain_timeout + runs.stop_grace + SHUTDOWN_MARGIN)


@dataclass(frozen=True)
class ServiceUser:
    """The account ``--user`` names: its home decides the default state dir; root gives it the key file."""

    name: str
    home: Path
    uid: int
    gid: int


def lookup_user(name: str) -> ServiceUser:
    """The account ``name`` on this host; a ConfigError when there is none."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(
            [
                ConfigProblem(
                    "flag --user",
                    "",
                    f"no user {name!r} on this host: create it first, or set agent.state_dir explicitly "
                    "(--set agent.state_dir=/var/lib/localagent) so nothing depends on its home",
                )
            ]
        ) from None
    return ServiceUser(name, Path(entry.pw_dir), entry.pw_uid, entry.pw_gid)


def service_state_dir(loaded: LoadedConfig, user: ServiceUser | None) -> Path:
    """The state dir the service will use.

    An explicit ``agent.state_dir`` is kept. The default depends on ``$HOME``: for ``--user`` it is that
    user's ``~/.local/state/localagent`` (looked up in the passwd database, never the installer's own);
    otherwise the installer's, as ``localagent run`` would use it.
    """
    if loaded.origins.get("agent.state_dir") != "default" or user is None:
        return loaded.config.agent.state_dir.absolute()
    return user.home / ".local" / "state" / "localagent"


def default_service_name(agent_name: str) -> str:
    """``localagent-<agent name>`` with anything a unit or program name cannot hold replaced by ``-``."""
    cleaned = _NAME_UNSAFE.sub("-", agent_name).strip("-.")
    return f"localagent-{cleaned}" if cleaned else "localagent"


def is_api_key_variable(name: str) -> bool:
    """Whether the environment variable ``name`` sets ``api.key`` (``LOCALAGENT_API__KEY``, any case)."""
    if not name.startswith(ENV_PREFIX):
        return False
    parts = name[len(ENV_PREFIX) :].split("__")
    return [part.lower() for part in parts] == ["api", "key"]


def service_environment(environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """``PATH`` plus every config variable (``LOCALAGENT_<SECTION>__<KEY>``) but the API key, sorted."""
    chosen: dict[str, str] = {}
    if environ.get("PATH"):
        chosen["PATH"] = environ["PATH"]
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and "__" in name[len(ENV_PREFIX) :] and not is_api_key_variable(name):
            chosen[name] = environ[name]
    return tuple(chosen.items())


def localagent_executable(
    python: str = sys.executable,
    argv0: str = sys.argv[0] if sys.argv else "",
    which: Callable[[str], str | None] = shutil.which,
) -> list[str]:
    """The absolute command that starts this installed localagent.

    In order: the console script next to the running interpreter (right for virtualenvs, and it is not a
    pyenv-style shim), the script this process was started as, ``localagent`` on ``PATH``, and finally
    ``<python> -m localagent.cli.main``. Symlinks are not resolved: a virtualenv's ``bin/`` must stay.
    """
    candidates: list[str] = []
    if python:
        candidates.append(os.path.join(os.path.dirname(os.path.abspath(python)), "localagent"))
    if argv0 and os.path.basename(argv0) == "localagent":
        candidates.append(os.path.abspath(argv0) if os.sep in argv0 else (which(argv0) or ""))
    candidates.append(which("localagent") or "")
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return [os.path.abspath(candidate)]
    return [os.path.abspath(python), "-m", "localagent.cli.main"]


def build_plan(
    loaded: LoadedConfig,
    run_args: Sequence[str],
    environ: Mapping[str, str],
    working_dir: Path,
    *,
    name: str | None = None,
    user: str | None = None,
    key_file: Path | None = None,
    executable: Sequence[str] | None = None,
    state_dir: Path | None = None,
) -> ServicePlan:
    """The plan for running ``localagent run <run_args>`` as a service.

    ``run_args`` must already be free of any key (``RunOptions.to_argv(absolute=True, include_key=False)``
    without ``--set api.key=...``); ``key_file`` is the file the key was written to, referenced as
    ``--set api.key_file=PATH``. ``state_dir`` (default: the config's) is pinned when it came from the
    default, which depends on ``$HOME`` (see :func:`service_state_dir`).
    """
    config = loaded.config
    args = list(run_args)
    if loaded.origins.get("agent.state_dir") == "default":
        args += ["--set", f"agent.state_dir={(state_dir or config.agent.state_dir).absolute()}"]
    if key_file is not None:
        args += ["--set", f"api.key_file={key_file.absolute()}"]
    command = list(executable) if executable is not None else localagent_executable()
    return ServicePlan(
        name=name or default_service_name(config.agent.name),
        description=f"localagent agent {config.agent.name}",
        argv=(*command, "run", *args),
        working_dir=working_dir.absolute(),
        environment=service_environment(environ),
        stop_timeout=stop_timeout(loaded),
        user=user,
    )
