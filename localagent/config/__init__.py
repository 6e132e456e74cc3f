"""localagent.config."""
