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
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from localagent.agent.logs import configure_logging
from localagent.agent.memory import freeze_startup_objects, limit_arenas, tune_collector
from localagent.agent.metrics import AgentMetrics
from localagent.agent.processes.ledger import LEDGER_DIR, LedgerEntry, RunLedger
from localagent.agent.processes.orphans import report_orphans, stop_orphans
from localagent.agent.processes.tracking import ProcessTracking
from localagent.agent.processes.watchdog import Watchdog
from localagent.agent.signals import SignalInbox, handle_signals
from localagent.agent.supervisor import Agent
from localagent.errors import ServiceError
from localagent.runtime.backends import open_backend, prefect_or

if TYPE_CHECKING:
    from localagent.agent.reload.watcher import ConfigWatcher
    from localagent.agent.run.reaper import ChildReaper
    from localagent.config import LoadedConfig
    from localagent.embedded.api import EmbeddedApi

logger = logging.getLogger("localagent.agent")


def run_agent(load: Callable[[], LoadedConfig]) -> int:
    """Run the agent until it is stopped; the process exit code (0, 130/143, or 1 after a forced stop).

    ``load`` is called once now and again on every reload (SIGHUP), so it must re-read every source.
    """
    limit_arenas()  # before any thread starts: each new thread could otherwise get a malloc arena of its own
    tune_collector()
    loaded = load()
    config = loaded.config
    configure_logging(config.logs)
    ensure_state_dir(config.agent.state_dir)

    from localagent.agent.run.console import ConsolePrinter
    from localagent.agent.run.reaper import ChildReaper

    with contextlib.ExitStack() as stack:
        inbox = stack.enter_context(SignalInbox())
        stack.enter_context(handle_signals(inbox))
        reaper = ChildReaper()
        reaper.start()
        stack.callback(logger.debug, "child reaper stopped")
        ledger, orphans, watchdog = _supervise_runs(stack, reaper, config.agent.state_dir, config.logs.format)
        stack.callback(reaper.stop)
        metrics = AgentMetrics()
        started: list[Agent] = []  # the agent, once made: until then the config in force is the first one

        def loaded_now() -> LoadedConfig:
            # Clients are made before the agent exists (the orphans' reports): they see the first config.
            return started[0].loaded if started else loaded

        backend = open_backend(loaded, stack, config_of=lambda: loaded_now().config, on_switch=metrics.count_api_switch)
        embedded = backend.embedded
        client_factory = prefect_or(
            loaded_now,
            backend.client_factory,
            on_prefect_key=watchdog.tell_prefect_key if watchdog is not None else None,
        )
        if orphans:  # the API (the embedded one included) is up now; the claims may start meanwhile
            threading.Thread(
                target=report_orphans,
                args=(ledger, orphans, client_factory),
                kwargs={"timeout": config.api.timeout},
                name="localagent-orphans",
                daemon=True,
            ).start()
        agent = Agent(
            loaded,
            reaper=reaper,
            console=ConsolePrinter(),
            metrics=metrics,
            inbox=inbox,
            embedded_url=backend.embedded_url,
            client_factory=client_factory,
        )
        started.append(agent)
        if embedded is not None:
            agent.set_listener_sweep(embedded.sweep)
        watcher = _watch_config(agent, load, embedded)
        freeze_startup_objects()
        try:
            return agent.run()
        finally:
            watcher.join()
    raise AssertionError("unreachable")  # pragma: no cover  (ExitStack does not swallow exceptions here)


def _supervise_runs(
    stack: contextlib.ExitStack, reaper: ChildReaper, state_dir: Path, log_format: str
) -> tuple[RunLedger, list[LedgerEntry], Watchdog | None]:
    """Track every process of every run, record runs in the ledger, start the watchdog; stop what a dead
    agent left on this ``state_dir`` (before the first claim). Returns the ledger, those dead agent's runs
    and the watchdog (None when it could not start).
    """
    tracking = ProcessTracking.detect()
    stack.callback(tracking.close)
    ledger = RunLedger(state_dir / LEDGER_DIR)
    reaper.track_runs(tracking, ledger)
    watchdog = Watchdog.start(ledger.directory, cgroup_root=tracking.cgroup_root, log_format=log_format)
    if watchdog is not None:
        stack.callback(watchdog.close)
    return ledger, stop_orphans(ledger), watchdog


def _watch_config(agent: Agent, load: Callable[[], LoadedConfig], embedded: EmbeddedApi | None) -> ConfigWatcher:
    """Hot reload: file changes and SIGHUP both go through one ReloadCoordinator; the watch ends with the agent.

    With an embedded API, a reload that changes ``server.address`` or the API key moves it first
    (:meth:`EmbeddedApi.follow`) and points the agent's claims at the new listener (same database, same
    agent id); the old listener stops once no run reports to it (the agent's listener sweep).
    """
    from localagent.agent.reload.coordinator import ReloadCoordinator
    from localagent.agent.reload.watcher import ConfigWatcher

    watcher: ConfigWatcher | None = None

    def follow_config() -> None:
        if watcher is not None:
            watcher.refresh()  # api.key_file may have moved

    def move_server(old: LoadedConfig, new: LoadedConfig) -> None:
        if embedded is not None:
            agent.set_embedded_url(embedded.follow(old, new))

    coordinator = ReloadCoordinator(
        agent,
        load,
        embedded_running=lambda: embedded is not None,
        on_server_change=move_server,
        on_applied=follow_config,
    )
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
