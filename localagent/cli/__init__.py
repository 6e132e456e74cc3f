"""The ``localagent`` command line: the only place that prints errors and picks exit codes."""
