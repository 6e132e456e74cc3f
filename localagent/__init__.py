"""localagent: a declarative, TOML-configured agent that runs flow runs as local processes."""

from __future__ import annotations

__version__ = "0.1.0"
