"""``localagent run``: placeholder until the config and agent runtime land."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run() -> None:
        """Run the agent."""
