"""The embedded API (``api.url = "embedded"``): the server run inside the agent's process, and the in-process
client of the orchestrator port that reaches it without HTTP.

This package imports the server and the ``api`` port, never the agent: the agent only sees the port, and the
composition root (:mod:`localagent.runtime`) hands it this package's clients.
"""
