"""``run_agent``: everything ``localagent run`` does, from loading the config to the exit code.

Usage::

    exit_code = run_agent(lambda: load_config(files, flags))

Start-up order: config, logging, state dir, signal handlers, child reaper, embedded API (when
``api.url = "embedded"``), then the :class:`Agent` (health endpoint, registration, heartbeat, claims) and the
config watcher (hot reload: file changes and SIGHUP go through one ``ReloadCoordinator``).
Shut-down runs in reverse. A ``ConfigError`` from the first load propagates; a service that cannot start
(a port in use, a state dir that cannot be created) raises ``ServiceError`` (exit code 3).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from localagent.agent.logs import configure_logging
from localagent.agent.loop import Agent
from localagent.agent.metrics import AgentMetrics
from localagent.agent.signals import SignalInbox, handle_signals
from localagent.errors import ServiceError

if TYPE_CHECKING:
    from localagent.agent.reload import ConfigWatcher
    from localagent.config import LoadedConfig

logger = logging.getLogger("localagent.agent")


def run_agent(load: Callable[[], LoadedConfig]) -> int:
    """Run the agent until it is stopped; the process exit code (0, 130/143, or 1 after a forced stop).

    ``load`` is called once now and again on every reload (SIGHUP), so it must re-read every source.
    """
    loaded = load()
    config = loaded.config
    configure_logging(config.logs)
    ensure_state_dir(config.agent.state_dir)

    from localagent.agent.console import ConsolePrinter
    from localagent.agent.reaper import ChildReaper

    with contextlib.ExitStack() as stack:
        inbox = stack.enter_context(SignalInbox())
        stack.enter_context(handle_signals(inbox))
        reaper = ChildReaper()
        reaper.start()
        stack.callback(logger.debug, "child reaper stopped")
        stack.callback(reaper.stop)
        embedded_url = None
        if config.api.url == "embedded":
            embedded_url = stack.enter_context(_embedded_api(loaded))
        agent = Agent(
            loaded,
            load=load,
            reaper=reaper,
            console=ConsolePrinter(),
            metrics=AgentMetrics(),
            inbox=inbox,
            embedded_url=embedded_url,
        )
        watcher = _watch_config(agent, load, embedded=embedded_url is not None)
        try:
            return agent.run()
        finally:
            watcher.join()
    raise AssertionError("unreachable")  # pragma: no cover  (ExitStack does not swallow exceptions here)


def _watch_config(agent: Agent, load: Callable[[], LoadedConfig], *, embedded: bool) -> ConfigWatcher:
    """Hot reload: file changes and SIGHUP both go through one ReloadCoordinator; the watch ends with the agent."""
    from localagent.agent.reload import ConfigWatcher, ReloadCoordinator

    watcher: ConfigWatcher | None = None

    def follow_config() -> None:
        if watcher is not None:
            watcher.refresh()  # api.key_file may have moved

    coordinator = ReloadCoordinator(agent, load, embedded_running=lambda: embedded, on_applied=follow_config)
    agent.set_reload_handler(coordinator.reload)
    watcher = ConfigWatcher(coordinator.watched_paths, coordinator.reload, stop_event=agent.closed)
    watcher.start()
    return watcher


def ensure_state_dir(path: Path) -> None:
    """Create ``agent.state_dir`` (mode 0700) and check that it is writable; ServiceError otherwise."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ServiceError(
            f"cannot create agent.state_dir {path}: {exc.strerror or exc}; choose a writable agent.state_dir"
        ) from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise ServiceError(f"agent.state_dir {path} is not writable; choose a writable agent.state_dir")


@contextlib.contextmanager
def _embedded_api(loaded: LoadedConfig) -> Iterator[str]:
    """Serve the API in this process on ``server.address``; yield its url."""
    from localagent.server.runner import ServerThread

    config = loaded.config
    server = ServerThread(
        address=config.server.address,
        database_url=config.database_url(),
        api_keys=(loaded.api_key,) if loaded.api_key else (),
    )
    try:
        server.start()
    except ServiceError as exc:
        cause = exc.__cause__
        if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
            raise ServiceError(
                f"the embedded API cannot listen on {config.server.address}: the address is already in use; "
                "stop what listens there, or change server.address (or point api.url at a running API)"
            ) from cause
        raise
    except OSError as exc:
        raise ServiceError(
            f"cannot start the embedded API on {config.server.address}: {exc.strerror or exc}; "
            "free the port or change server.address"
        ) from exc
    logger.info("embedded API listening on %s (database %s)", server.url, _redact(config.database_url()))
    try:
        yield server.url
    finally:
        server.stop()
        logger.debug("embedded API stopped")


def _redact(database_url: str) -> str:
    """A database URL without its password."""
    scheme, sep, rest = database_url.partition("://")
    if sep and "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return database_url
