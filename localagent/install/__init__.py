"""Service definitions for running an agent under supervisord or systemd.

Usage::

    from localagent.install import build_plan, render_supervisord, render_systemd

    plan = build_plan(loaded, run_args, environ=dict(os.environ), working_dir=Path.cwd())
    print(render_systemd(plan))

:mod:`~localagent.install.plan` derives everything from the effective config once (executable, paths,
environment, stop timeout); :mod:`~localagent.install.keys` keeps the API key out of the file;
:mod:`~localagent.install.supervisord` and :mod:`~localagent.install.systemd` only quote and format.
"""

from __future__ import annotations

from localagent.install.keys import service_key_file, write_key_file
from localagent.install.plan import ServicePlan, build_plan, stop_timeout
from localagent.install.supervisord import render_supervisord
from localagent.install.systemd import render_systemd

__all__ = [
    "ServicePlan",
    "build_plan",
    "render_supervisord",
    "render_systemd",
    "service_key_file",
    "stop_timeout",
    "write_key_file",
]
