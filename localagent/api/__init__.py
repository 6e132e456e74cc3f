"""localagent.api."""
