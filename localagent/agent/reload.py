"""Hot reload: watch the config files, re-run the load, apply what changed (or keep the last good config).

Usage::

    coordinator = ReloadCoordinator(agent, load)
    watcher = ConfigWatcher(coordinator.watched_paths, coordinator.reload, stop_event=stopping)
    watcher.start()          # file changes -> coordinator.reload("file change")
    coordinator.reload("SIGHUP")
    stopping.set(); watcher.join()

:class:`ConfigWatcher` watches the *directories* of every config file and of ``api.key_file`` (not the
files: an editor's atomic rename, a ``git pull`` or a Kubernetes ConfigMap's ``..data`` symlink swap
replaces the inode a file watch would hold). Events are kept when they touch a watched path or a link on
its way (``..data``); a burst ends in one call once the directories have been quiet for ``quiet_period``.

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
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from localagent.agent.config_diff import describe_changes, diff_configs
from localagent.config.loader import config_hash
from localagent.config.render import public_hash, redact_url
from localagent.errors import ConfigError

if TYPE_CHECKING:
    from watchfiles import Change

    from localagent.config import LoadedConfig

logger = logging.getLogger("localagent.agent.reload")

QUIET_PERIOD = 0.1  # seconds with no event before a burst counts as finished
_STEP_MS = 30  # watchfiles groups events arriving closer than this
_MAX_BATCH_MS = 1000  # ... but yields at least this often during a continuous stream
_RETRY_WATCH = 1.0  # after the watch failed (a watched directory vanished), try again this much later
_MAX_LINKS = 40


class ReloadTarget(Protocol):
    """What the coordinator needs of the agent (``localagent.agent.loop.Agent``)."""

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


def _link_chain(path: Path) -> list[Path]:
    """``path``, every symlink met while resolving it (files and parent directories), and its real path."""
    chain: list[Path] = []
    current = Path(os.path.abspath(path))
    for _ in range(_MAX_LINKS):
        chain.append(current)
        chain.extend(parent for parent in current.parents if parent.is_symlink())
        if not current.is_symlink():
            break
        try:
            target = os.readlink(current)
        except OSError:
            break
        current = Path(os.path.normpath(current.parent / target))
    chain.append(Path(os.path.realpath(path)))
    return list(dict.fromkeys(chain))


@dataclasses.dataclass(frozen=True)
class WatchPlan:
    """The directories to watch and the paths in them whose changes matter."""

    directories: tuple[Path, ...]
    paths: frozenset[str]

    @classmethod
    def for_files(cls, files: Iterable[Path]) -> WatchPlan:
        paths: set[str] = set()
        directories: dict[Path, None] = {}
        for file in files:
            for link in _link_chain(file):
                paths.add(str(link))
                directory = Path(os.path.realpath(link.parent))
                paths.add(str(directory / link.name))
                if directory.is_dir():
                    directories[directory] = None
        return cls(tuple(directories), frozenset(paths))

    def wants(self, path: str) -> bool:
        return path in self.paths


class ConfigWatcher:
    """Watches config files through their directories in a daemon thread; one ``on_change`` per burst.

    watcher = ConfigWatcher(lambda: [Path("agent.toml")], on_change, stop_event=stop); watcher.start()

    ``files`` is asked again after every ``on_change`` and on :meth:`refresh`, so the watch follows the
    config in force (a reload that points ``api.key_file`` elsewhere watches the new file).
    """

    def __init__(
        self,
        files: Callable[[], Sequence[Path]],
        on_change: Callable[[str], object],
        *,
        stop_event: threading.Event | None = None,
        quiet_period: float = QUIET_PERIOD,
    ) -> None:
        self._files = files
        self._on_change = on_change
        self._stop = stop_event or threading.Event()
        self._quiet = quiet_period
        self._refresh = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self.plan = WatchPlan((), frozenset())

    def start(self) -> None:
        """Start watching; returns once the first watch is set up (so no change after it is missed)."""
        self._thread = threading.Thread(target=self._run, name="localagent-config-watch", daemon=True)
        self._thread.start()
        self._ready.wait(5.0)

    def refresh(self) -> None:
        """The config in force changed: recompute the watched paths at the next quiet moment."""
        self._refresh.set()

    def stop(self) -> None:
        self._stop.set()
        self.join()

    def join(self, timeout: float = 5.0) -> None:
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._refresh.clear()
            self.plan = WatchPlan.for_files(self._files())
            if not self.plan.directories:
                self._ready.set()
                self._stop.wait(_RETRY_WATCH)
                continue
            try:
                self._watch(self.plan)
            except Exception as exc:  # a watched directory vanished, inotify limits, ...: keep trying
                logger.warning("config watch failed (%s); retrying in %gs", exc, _RETRY_WATCH)
                self._ready.set()
                self._stop.wait(_RETRY_WATCH)

    def _watch(self, plan: WatchPlan) -> None:
        """Watch ``plan`` until the config in force (or the link layout) asks for another plan."""
        from watchfiles import watch

        logger.debug("watching %s for %s", [str(d) for d in plan.directories], sorted(plan.paths))

        def relevant(change: Change, path: str) -> bool:
            return plan.wants(path)

        # The first tick comes once the watch is in place; the files are checked then, so a change made
        # before it (since the load at start, or between two watches) is not missed.
        pending_since: float | None = time.monotonic() - self._quiet
        for changes in watch(
            *plan.directories,
            watch_filter=relevant,
            debounce=_MAX_BATCH_MS,
            step=_STEP_MS,
            stop_event=self._stop,
            rust_timeout=max(1, int(self._quiet * 1000)),
            yield_on_timeout=True,
            recursive=False,
            raise_interrupt=False,
        ):
            try:
                now = time.monotonic()
                if changes:
                    logger.debug("config files changed: %s", sorted(path for _, path in changes))
                    pending_since = now
                    continue
                if pending_since is not None and now - pending_since >= self._quiet:
                    pending_since = None
                    self._notify()
                    if WatchPlan.for_files(self._files()) != plan:
                        return
                elif self._refresh.is_set():
                    self._refresh.clear()
                    if WatchPlan.for_files(self._files()) != plan:
                        return
            finally:
                self._ready.set()  # after the first tick's check: start() returns with the watch in place

    def _notify(self) -> None:
        try:
            self._on_change("file change")
        except Exception:
            logger.exception("config reload failed unexpectedly")


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
