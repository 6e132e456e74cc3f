"""The composition root of ``localagent run``: it picks the orchestrator backend (the embedded API or HTTP)
and wires it, the reaper, the console, the metrics and the config watcher into an
:class:`~localagent.agent.supervisor.Agent`. The only package that imports both the agent and a backend."""
