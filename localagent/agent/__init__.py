"""localagent.agent."""
