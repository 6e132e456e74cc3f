"""Applying a reload: re-run the load, apply what changed (or keep the last good config).

Usage::

    coordinator = ReloadCoordinator(agent, load)
    watcher = ConfigWatcher(coordinator.watched_paths, coordinator.reload, stop_event=stopping)  # watcher.py
    coordinator.reload("SIGHUP")

:class:`ReloadCoordinator` is the one reload path, for file changes and SIGHUP alike: it re-runs ``load``
(same files, environment as at start, original flags), skips a result whose hash equals the config in
force (a SIGHUP that finds nothing changed says so in one INFO line), keeps ``server.database`` of a
running embedded API, moves the embedded API first when ``server.address`` or the key changed (through
``on_server_change``; if it cannot move, the old address and key are kept and the error logged), hands the
config to ``agent.apply_config`` and logs one line per reload: ``config generation 4: agent.labels ['a']
-> ['a', 'b']``. An invalid config goes to ``agent.reject_config`` (logged as ``config validate`` prints
it, reported until fixed) once: the same error again is not reported again. When the last good content
comes back, ``agent.clear_config_error`` ends the error without a new generation.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from localagent.agent.reload.diff import describe_changes, diff_configs
from localagent.config.loader import config_hash
from localagent.config.render import public_hash, redact_url
from localagent.errors import ConfigError

if TYPE_CHECKING:
    from localagent.config import LoadedConfig

logger = logging.getLogger("localagent.agent.reload")


class ReloadTarget(Protocol):
    """What the coordinator needs of the agent (``localagent.agent.supervisor.Agent``)."""

    @property
    def loaded(self) -> LoadedConfig: ...
    @property
    def generation(self) -> int: ...
    def apply_config(self, loaded: LoadedConfig) -> None: ...
    def reject_config(self, error: ConfigError) -> None: ...
    def clear_config_error(self) -> None: ...


ServerChange = Callable[["LoadedConfig", "LoadedConfig"], None]
"""Called with ``(old, new)`` before a reload that changes how the embedded API listens is applied; raises
when the embedded API cannot follow (the reload then keeps the old address and key)."""


class ReloadCoordinator:
    """The one reload path (file watcher and SIGHUP): load, compare, apply or reject, log one line.

    coordinator = ReloadCoordinator(agent, load); coordinator.reload("SIGHUP")
    """

    def __init__(
        self,
        agent: ReloadTarget,
        load: Callable[[], LoadedConfig],
        *,
        embedded_running: Callable[[], bool] = lambda: False,
        on_server_change: ServerChange | None = None,
        on_applied: Callable[[], None] | None = None,
    ) -> None:
        self._agent = agent
        self._load = load
        self._embedded_running = embedded_running
        self._on_server_change = on_server_change
        self._on_applied = on_applied
        self._lock = threading.Lock()
        self._loaded_hash = agent.loaded.hash  # hash of the last good load, before anything was kept back
        self._failing = False
        self._last_error: str | None = None  # the error reported while failing (reported once)

    def watched_paths(self) -> list[Path]:
        """Every config file loaded, and ``api.key_file`` of the config in force."""
        loaded = self._agent.loaded
        paths = list(loaded.files)
        if loaded.config.api.key_file is not None:
            paths.append(Path(os.path.abspath(loaded.config.api.key_file)))
        return paths

    def reload(self, trigger: str = "SIGHUP") -> bool:
        """Reload now; True when a new config generation was applied. Never raises for a bad config."""
        with self._lock:
            try:
                loaded = self._load()
            except ConfigError as exc:
                self._refuse(exc, trigger)
                return False
            except Exception as exc:  # a loader bug: still a refused config, shown on /health, never None
                logger.exception("config reload: the loader failed unexpectedly")
                self._refuse(ConfigError(f"the config could not be loaded: {type(exc).__name__}: {exc}"), trigger)
                return False
            if loaded.hash == self._loaded_hash and self._failing:
                # The last good content is back (a reverted push): nothing effective changed, so no new
                # generation; only the error is over.
                self._failing, self._last_error = False, None
                self._agent.clear_config_error()
                logger.info(
                    "config reload (%s): the config error is cleared; the config in force is unchanged "
                    "(generation %d, hash %s)",
                    trigger,
                    self._agent.generation,
                    public_hash(loaded)[:12],
                )
                return False
            if loaded.hash == self._loaded_hash:
                # An operator who sends SIGHUP wants to see it was handled; file events stay quiet.
                log = logger.info if trigger == "SIGHUP" else logger.debug
                log(
                    "config reload (%s): nothing changed, keeping generation %d (hash %s)",
                    trigger,
                    self._agent.generation,
                    public_hash(loaded)[:12],
                )
                return False
            old = self._agent.loaded
            raw_hash = loaded.hash
            loaded = self._keep_embedded(old, loaded)
            if self._on_server_change is not None and self._server_moved(old, loaded):
                try:
                    self._on_server_change(old, loaded)
                except Exception as exc:
                    loaded = self._keep_server(old, loaded, [])
                    raw_hash = loaded.hash  # so that the next reload tries again
                    logger.error(
                        "the embedded API could not follow the new config (%s): it keeps its address and key", exc
                    )
            changes = diff_configs(old, loaded)
            self._agent.apply_config(loaded)
            self._loaded_hash, self._failing, self._last_error = raw_hash, False, None
            logger.info(
                "config generation %d: %s (%s, hash %s)",
                self._agent.generation,
                describe_changes(changes),
                trigger,
                public_hash(loaded)[:12],
            )
        if self._on_applied is not None:
            self._on_applied()
        return True

    def _refuse(self, error: ConfigError, trigger: str) -> None:
        """Report a config error once: the same error again (one push seen twice, a ``touch``) is not news.

        A symlink swap (``..data``) changes the watched paths, so the watcher looks once more after the
        first reload; a ``touch`` of a broken file reloads it too. Neither logs or counts the error again.
        """
        message = str(error)
        if self._failing and message == self._last_error:
            log = logger.info if trigger == "SIGHUP" else logger.debug
            log(
                "config reload (%s): the config is still invalid, with the error already reported; keeping "
                "generation %d",
                trigger,
                self._agent.generation,
            )
            return
        self._failing, self._last_error = True, message
        self._agent.reject_config(error)

    def _keep_embedded(self, old: LoadedConfig, new: LoadedConfig) -> LoadedConfig:
        """Under a running embedded API, keep what it cannot change live; log that a restart applies it.

        ``server.database`` is always kept. ``server.address`` and the API key are kept too unless an
        ``on_server_change`` hook moves the embedded API (it was started with that address and key).
        """
        if not self._embedded_running() or new.config.api.url != "embedded":
            return new
        kept: list[str] = []
        if new.config.database_url() != old.config.database_url():
            server = new.config.server.model_copy(update={"database": old.config.database_url()})
            config = new.config.model_copy(update={"server": server})
            new = dataclasses.replace(new, config=config, hash=config_hash(config, new.api_key))
            kept.append(f"server.database {redact_url(old.config.database_url())}")
        pool_keys = ("db_pool_size", "db_max_overflow", "db_prepared_statements")
        changed = [key for key in pool_keys if getattr(new.config.server, key) != getattr(old.config.server, key)]
        if changed:
            server = new.config.server.model_copy(update={key: getattr(old.config.server, key) for key in changed})
            config = new.config.model_copy(update={"server": server})
            new = dataclasses.replace(new, config=config, hash=config_hash(config, new.api_key))
            kept.extend(f"server.{key} {getattr(old.config.server, key)!r}" for key in changed)
        if self._on_server_change is None:
            new = self._keep_server(old, new, kept)
        if kept:
            logger.warning(
                "the running embedded API keeps %s: restart the agent to apply the new value", ", ".join(kept)
            )
        return new

    @staticmethod
    def _keep_server(old: LoadedConfig, new: LoadedConfig, kept: list[str]) -> LoadedConfig:
        """``new`` with the embedded API's address and key of ``old``; what was kept is added to ``kept``."""
        config, api_key = new.config, new.api_key
        if config.server.address != old.config.server.address:
            config = config.model_copy(
                update={"server": config.server.model_copy(update={"address": old.config.server.address})}
            )
            kept.append(f"server.address {old.config.server.address}")
        if api_key != old.api_key:
            api = config.api.model_copy(update={"key": old.config.api.key, "key_file": old.config.api.key_file})
            config = config.model_copy(update={"api": api})
            api_key = old.api_key
            kept.append("the API key")
        if config is new.config:
            return new
        return dataclasses.replace(new, config=config, api_key=api_key, hash=config_hash(config, api_key))

    def _server_moved(self, old: LoadedConfig, new: LoadedConfig) -> bool:
        if not self._embedded_running():
            return False
        return old.config.server.address != new.config.server.address or old.api_key != new.api_key
