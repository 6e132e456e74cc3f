"""Shared pieces of the reload tests: config files written for real, a recording agent, waiting for a condition."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from localagent.config import LoadedConfig, load_config
from localagent.errors import ConfigError


def write_config(path: Path, state_dir: Path, labels: list[str], *, extra: str = "") -> None:
    """Write an agent.toml in place (open, truncate, write)."""
    quoted = ", ".join(f'"{label}"' for label in labels)
    path.write_text(
        f'[agent]\nlabels = [{quoted}]\nhostname_label = false\nstate_dir = "{state_dir}"\n{extra}',
        encoding="utf-8",
    )


def save_by_rename(path: Path, text: str) -> None:
    """Save the way editors and `git pull` do: write a temporary file beside ``path``, rename it over."""
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


class RecordingAgent:
    """The agent side of a reload, recording what the coordinator hands it (the ReloadTarget seam)."""

    def __init__(self, loaded: LoadedConfig) -> None:
        self._loaded = loaded
        self._generation = 1
        self.applied: list[LoadedConfig] = []
        self.rejected: list[ConfigError] = []
        self.lock = threading.Lock()

    @property
    def loaded(self) -> LoadedConfig:
        return self._loaded

    @property
    def generation(self) -> int:
        return self._generation

    def apply_config(self, loaded: LoadedConfig) -> None:
        with self.lock:
            self._loaded = loaded
            self._generation += 1
            self.applied.append(loaded)

    def reject_config(self, error: ConfigError) -> None:
        with self.lock:
            self.rejected.append(error)

    def labels(self) -> tuple[str, ...]:
        return self._loaded.config.agent.labels


def loader(*files: Path) -> Callable[[], LoadedConfig]:
    environ = dict(os.environ)
    return lambda: load_config(list(files), None, environ)
