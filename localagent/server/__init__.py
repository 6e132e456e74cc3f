"""localagent.server."""
