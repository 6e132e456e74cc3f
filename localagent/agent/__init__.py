"""The agent: claims flow runs from the API and runs them as local processes.

Loop side: ``service.run_agent`` (start-up and shut-down of everything), ``loop.Agent`` (claims, drain,
reload seam), ``registration`` (register, heartbeat), ``run_table`` (the runs started here), ``health``
(/health, /metrics), ``metrics``, ``signals``, ``logs``. Run side: ``execution.RunExecution`` (one run),
``launcher``, ``reaper``, ``output``, ``spool``, ``shipper``, ``console``. Hot reload: ``reload``.

Nothing is imported here, so that importing one module does not pull in the others.
"""
