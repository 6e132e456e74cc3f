"""The agent's configuration: the frozen model, and loading it from defaults, files, env and flags.

Usage::

    from localagent.config import FlagOverrides, load_config

    loaded = load_config(["agent.toml"], FlagOverrides(labels=("gpu",)))
    loaded.config.agent.max_concurrent_runs

Importing this package imports pydantic; command-line modules import it inside their commands.
"""

from __future__ import annotations

from localagent.config.loader import LoadedConfig, Loader, build_sources, load_config
from localagent.config.model import AgentConfig
from localagent.config.sources import FlagOverrides, FlagSetting, Origin

__all__ = [
    "AgentConfig",
    "FlagOverrides",
    "FlagSetting",
    "LoadedConfig",
    "Loader",
    "Origin",
    "build_sources",
    "load_config",
]
