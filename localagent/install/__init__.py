"""localagent.install."""
