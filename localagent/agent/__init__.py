"""The agent: claims flow runs from an orchestrator (through the port, :mod:`localagent.api.port`) and runs
them as local processes. It never imports the server.

``supervisor.Agent`` owns everything (start-up, drain, shut-down, the reload seam); ``coordination/`` talks
to the orchestrator (session, claims, heartbeat, cancel watch, state batches); ``run/`` is one run's life
(execution, launcher, reaper, output, spool, console, shipper, reporter, stopping, leftovers); ``reload/``
is hot reload (watcher, coordinator, diff). Helpers: ``config_in_force``, ``run_table``, ``retry``,
``health``, ``health_report``, ``metrics``, ``signals``, ``logs``, ``memory``, ``background``. The
composition root that builds an agent for ``localagent run`` is :mod:`localagent.runtime`. See
docs/architecture.md.

Nothing is imported here, so that importing one module does not pull in the others.
"""
