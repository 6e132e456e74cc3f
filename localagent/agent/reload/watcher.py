"""Watching the config files: one call per burst of changes to any of them (or to ``api.key_file``).

Usage::

    watcher = ConfigWatcher(coordinator.watched_paths, coordinator.reload, stop_event=stopping)
    watcher.start()          # file changes -> coordinator.reload("file change")
    stopping.set(); watcher.join()

:class:`ConfigWatcher` watches the *directories* of every config file and of ``api.key_file`` (not the
files: an editor's atomic rename, a ``git pull`` or a Kubernetes ConfigMap's ``..data`` symlink swap
replaces the inode a file watch would hold). Events are kept when they touch a watched path or a link on
its way (``..data``); a burst ends in one call once the directories have been quiet for ``quiet_period``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watchfiles import Change

logger = logging.getLogger("localagent.agent.reload")

QUIET_PERIOD = 0.1  # seconds with no event before a burst counts as finished
_STEP_MS = 30  # watchfiles groups events arriving closer than this
_MAX_BATCH_MS = 1000  # ... but yields at least this often during a continuous stream
_RETRY_WATCH = 1.0  # after the watch failed (a watched directory vanished), try again this much later
_MAX_LINKS = 40


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
