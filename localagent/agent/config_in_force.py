"""The config in force: one frozen :class:`LoadedConfig`, its generation and the last refused reload's error.

Usage::

    config = ConfigInForce(loaded)
    loaded, generation, error = config.state()     # one consistent snapshot
    old = config.swap(new)                         # a reload applied: generation + 1
    config.refuse("agent.toml:7: ...")             # a reload refused: the error is reported until fixed

Every reader takes a snapshot at the moment it acts (a claim's size when it asks, a run's settings when it
starts), so a reload applies from the next act without anything being restarted. Thread-safe.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from localagent.config import LoadedConfig
    from localagent.config.model import AgentConfig


class ConfigInForce:
    """The agent's current config; swapped whole by a reload, never mutated."""

    def __init__(self, loaded: LoadedConfig) -> None:
        self._lock = threading.Lock()
        self._loaded = loaded
        self._generation = 1
        self._error: str | None = None

    @property
    def loaded(self) -> LoadedConfig:
        return self._loaded

    @property
    def config(self) -> AgentConfig:
        return self._loaded.config

    @property
    def generation(self) -> int:
        return self._generation

    def state(self) -> tuple[LoadedConfig, int, str | None]:
        """``(loaded, generation, error of the last refused reload or None)``, taken together."""
        with self._lock:
            return self._loaded, self._generation, self._error

    def swap(self, loaded: LoadedConfig) -> LoadedConfig:
        """Make ``loaded`` current (generation + 1, error cleared); the config it replaced."""
        with self._lock:
            old, self._loaded = self._loaded, loaded
            self._generation += 1
            self._error = None
        return old

    def refuse(self, message: str) -> int:
        """Keep the config; report ``message`` until a reload succeeds. The generation kept."""
        with self._lock:
            self._error = message
            return self._generation
