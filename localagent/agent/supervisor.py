"""The agent's supervisor: start-up, serving until a stop signal, drain, shut-down; it owns every part.

Usage::

    agent = Agent(loaded, reaper=reaper, console=console, metrics=metrics, inbox=inbox, client_factory=factory)
    with handle_signals(inbox):
        exit_code = agent.run()     # start-up, loop, shut-down

Threads: the caller's thread supervises (signals, reloads, drain: this module); ``localagent-claim``
registers and long-polls claims (:mod:`~localagent.agent.coordination.claims`); ``localagent-heartbeat``
reports what runs here and picks up cancels (:mod:`~localagent.agent.coordination.heartbeat`); while every
slot is busy (or the agent drains) ``localagent-cancel-watch`` long-polls with ``slots = 0``
(:mod:`~localagent.agent.coordination.cancel_watch`). Each claimed run becomes a
:class:`~localagent.agent.run.execution.RunExecution` (or whatever ``execution_factory`` builds, for tests)
with a client scoped to that run's token on the API that handed it out. Output an earlier agent left in
``state_dir`` is set aside before the first claim and, once registered, delivered by ``localagent-leftovers``
(:mod:`localagent.agent.run.leftovers`).

The config in force (:mod:`~localagent.agent.config_in_force`) is swapped atomically by
:meth:`Agent.apply_config`; the one reload path (:class:`~localagent.agent.reload.coordinator.ReloadCoordinator`,
wired by the composition root) calls it, or :meth:`Agent.reject_config` for a refused config.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from localagent.agent.config_in_force import ConfigInForce
from localagent.agent.coordination.api_lost import ApiLostWatch
from localagent.agent.coordination.cancel_watch import CancelWatch
from localagent.agent.coordination.claims import ClaimLoop
from localagent.agent.coordination.heartbeat import HeartbeatLoop
from localagent.agent.coordination.lifecycle import Lifecycle
from localagent.agent.coordination.session import AgentSession
from localagent.agent.coordination.state_batch import StateBatchers
from localagent.agent.health import HealthServer
from localagent.agent.health_report import Contact, health_report
from localagent.agent.logs import configure_logging
from localagent.agent.metrics import AgentMetrics
from localagent.agent.run.leftovers import LeftoverSpools
from localagent.agent.run.reporter import PendingDeliveries
from localagent.agent.run_table import ExecutionFactory, RunTable, default_execution_factory
from localagent.agent.signals import RELOAD_SIGNALS, SignalInbox
from localagent.errors import ConfigError, ServiceError

if TYPE_CHECKING:
    from localagent.agent.run.console import ConsolePrinter
    from localagent.agent.run.reaper import ChildReaper
    from localagent.api.port import OrchestratorFactory
    from localagent.config import LoadedConfig

logger = logging.getLogger("localagent.agent")

EXIT_OK = 0
EXIT_FAILED = 1  # the claim loop failed unexpectedly (logged with its traceback)
EXIT_RUNS_STOPPED = 1  # max_polls reached, but runs outlived drain_timeout and had to be stopped
DELIVERY_GRACE_ON_EXIT = 10.0  # seconds a shutdown waits for queued final states and output


class Agent:
    """One agent: owns the claim loop, the heartbeat, the cancel watch, the health endpoint and its runs.

    ``Agent(loaded, reaper=..., console=..., metrics=..., inbox=..., client_factory=...).run() -> exit code``

    Reload seam: ``apply_config(new)`` makes a config current (live, nothing restarts), ``reject_config(exc)``
    keeps the current one and reports the error; ``set_reload_handler(fn)`` routes SIGHUP to ``fn("SIGHUP")``
    (without one, SIGHUP is logged and ignored); ``closed`` is a stop event for a file watcher;
    ``set_embedded_url`` follows an embedded API that re-bound; ``set_listener_sweep(fn)`` has ``fn(urls)``
    called at every heartbeat with the urls runs still report to (so an embedded listener left behind can
    stop once unused). All of these are safe to call from any thread.
    """

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        reaper: ChildReaper,
        console: ConsolePrinter,
        metrics: AgentMetrics,
        inbox: SignalInbox,
        client_factory: OrchestratorFactory,
        embedded_url: str | None = None,
        execution_factory: ExecutionFactory | None = None,
        delivery_grace: float = DELIVERY_GRACE_ON_EXIT,
    ) -> None:
        self._console = console
        self._delivery_grace = delivery_grace
        self._metrics = metrics
        self._inbox = inbox
        self._config = ConfigInForce(loaded)
        self._life = Lifecycle()
        self._contact = Contact()
        self._state_batchers = StateBatchers()
        self._pending = PendingDeliveries()
        self._runs = RunTable(
            execution_factory=execution_factory or default_execution_factory(),
            reaper=reaper,
            console=console,
            metrics=metrics,
            on_change=self._run_finished,
            pending=self._pending,
        )
        self._session = AgentSession(
            config_state=self._config.state,
            embedded_url=embedded_url,
            client_factory=client_factory,
            on_contact=self._contact.mark,
        )
        self._leftovers = LeftoverSpools(loaded.config.agent.state_dir / "spool", metrics=metrics)
        self._claims = ClaimLoop(
            self._config,
            self._session,
            self._runs,
            self._leftovers,
            self._state_batchers,
            metrics,
            self._life,
            on_contact=self._contact.mark,
        )
        self._heartbeat = HeartbeatLoop(
            self._config, self._session, self._runs, self._life, claim_in_flight=lambda: self._claims.in_flight
        )
        self._cancel_watch = CancelWatch(
            self._config, self._session, self._runs, self._life, on_contact=self._contact.mark
        )
        self._api_lost = ApiLostWatch(self._config, self._contact, self._runs, self._life)
        self._health = HealthServer(report=self.health_report, metrics=metrics)
        self._reload_handler: Callable[[str], object] | None = None
        self._threads: list[threading.Thread] = []
        metrics.track_running(lambda: len(self._runs))
        console.enabled = loaded.config.logs.show_flow_logs

    # -- the config in force -------------------------------------------------------------------------

    @property
    def loaded(self) -> LoadedConfig:
        return self._config.loaded

    @property
    def generation(self) -> int:
        return self._config.generation

    def apply_config(self, loaded: LoadedConfig) -> None:
        """Make ``loaded`` the config in force, at once, without stopping anything.

        Labels, limits, the poll interval and run defaults apply from the next claim's answer (runs already
        started keep the config they started with); ``logs.show_flow_logs``, ``logs.level`` and
        ``logs.format`` apply at once; ``health.address`` re-binds; a new ``api.url``/key moves registration
        and claims to the new API while started runs keep their own client. The config generation goes up by
        one.
        """
        old = self._config.swap(loaded)
        config = loaded.config
        self._console.enabled = config.logs.show_flow_logs
        if (config.logs.level, config.logs.format) != (old.config.logs.level, old.config.logs.format):
            configure_logging(config.logs)
        if config.health.address != old.config.health.address:
            try:
                self._health.rebind(config.health.address)
            except ServiceError as exc:
                logger.error("%s", exc)
        self._life.slot_freed.set()  # a raised max_concurrent_runs frees slots now
        # Tell the API the new labels (and generation) now: a claim long-poll still waiting with the old
        # labels then returns, and the next claim asks with the new ones.
        self._life.beat_now.set()
        self._metrics.observe_reload(ok=True)

    def reject_config(self, error: ConfigError) -> None:
        """Keep the config in force; log ``error`` as ``config validate`` prints it and report it until fixed."""
        message = str(error)
        generation = self._config.refuse(message)
        count = error.count
        # The same lines `localagent config validate` prints for this config.
        logger.error(
            "config reload refused, keeping generation %d:\n%s\nconfig is invalid: %d problem%s",
            generation,
            message,
            count,
            "s" if count != 1 else "",
        )
        self._life.beat_now.set()  # report config.error to the API now
        self._metrics.observe_reload(ok=False)

    def clear_config_error(self) -> None:
        """The config in force is valid again (its content came back): stop reporting the error."""
        self._config.clear_error()
        self._life.beat_now.set()

    @property
    def closed(self) -> threading.Event:
        """Set once the agent shuts down: a stop event for helpers tied to its life (a config watcher)."""
        return self._life.closed

    def set_reload_handler(self, handler: Callable[[str], object]) -> None:
        """Route reload requests (SIGHUP, called with ``"SIGHUP"``) to ``handler``."""
        self._reload_handler = handler

    def set_embedded_url(self, url: str) -> None:
        """The embedded API moved (``server.address`` re-bound): claim there from now on (same agent id)."""
        self._session.set_embedded_url(url)

    def set_listener_sweep(self, sweep: Callable[[set[str]], None]) -> None:
        """Call ``sweep(urls)`` at every heartbeat with the urls that runs (or a claim in flight) still use."""
        self._heartbeat.sweep = sweep

    def _request_reload(self, trigger: str) -> None:
        handler = self._reload_handler
        if handler is None:
            logger.warning("%s: no config reload is wired up; keeping the config in force", trigger)
            return
        try:
            handler(trigger)
        except Exception:
            logger.exception("config reload (%s) failed; keeping the config in force", trigger)

    # -- run ----------------------------------------------------------------------------------------

    def run(self) -> int:
        """Start up, serve until a stop signal (or ``max_polls``), drain, shut down; return the exit code."""
        self._start()
        try:
            stop_signal = self._serve()
            exit_code = self._drain(stop_signal)
            return EXIT_FAILED if self._claims.failed and exit_code == EXIT_OK else exit_code
        finally:
            self._close()

    def _start(self) -> None:
        config = self._config.config
        if config.health.address:
            self._health.start(config.health.address)
        labels = ", ".join(config.agent.effective_labels()) or "none"
        logger.info(
            "agent %r starting: labels [%s]%s, API %s%s, max_concurrent_runs %s",
            config.agent.name,
            labels,
            " + unlabeled runs" if config.agent.run_unlabeled else "",
            self._session.api_url() if config.api.url == "embedded" else ", ".join(config.api.urls),
            " (embedded)" if config.api.url == "embedded" else "",
            config.agent.max_concurrent_runs or "unlimited",
        )
        self._leftovers.collect()  # before the first claim: a run claimed again starts its spool afresh
        self._threads = [
            threading.Thread(target=self._claim_thread, name="localagent-claim", daemon=True),
            threading.Thread(target=self._heartbeat.run, name="localagent-heartbeat", daemon=True),
            threading.Thread(target=self._cancel_watch.run, name="localagent-cancel-watch", daemon=True),
            threading.Thread(target=self._api_lost.run, name="localagent-api-lost", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _claim_thread(self) -> None:
        try:
            self._claims.run()
        finally:
            self._inbox.notify()  # the supervisor sees claims_over

    def _serve(self) -> signal.Signals | None:
        """Wait for a stop signal (returned) or the end of the claim loop (None); reload on SIGHUP."""
        while True:
            for signum in self._inbox.wait(timeout=None):
                if signum in RELOAD_SIGNALS:
                    self._request_reload(signum.name)
                else:
                    return signum
            if self._life.claims_over.is_set():
                return None

    def _drain(self, stop_signal: signal.Signals | None) -> int:
        self._life.stopping.set()
        self._life.slot_freed.set()
        if stop_signal is not None:  # (after max_polls the agent polls no more)
            self._life.not_claiming.set()  # cancels keep arriving at once while runs drain
        drain_timeout = self._config.config.runs.drain_timeout
        running = self._runs.running()
        if stop_signal is not None:
            logger.info(
                "received %s: no new runs; draining %d running run(s) for up to %gs (send it again to stop them now)",
                stop_signal.name,
                len(running),
                drain_timeout,
            )
        elif running:
            logger.info("max_polls reached: draining %d running run(s) for up to %gs", len(running), drain_timeout)
        deadline = time.monotonic() + drain_timeout
        while running:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                logger.warning("drain_timeout passed: stopping %d run(s)", len(running))
                self._runs.shutdown_all(immediate=False)
                self._wait_stopped()
                return EXIT_RUNS_STOPPED if stop_signal is None else 128 + stop_signal
            second = self._wait_signal(remaining)
            if second is not None:
                return self._stop_now(second)
            running = self._runs.running()
        return EXIT_OK

    def _wait_signal(self, timeout: float) -> signal.Signals | None:
        """Wait up to ``timeout`` for a wake-up; reload on SIGHUP; return a stop signal if one came."""
        for signum in self._inbox.wait(timeout=min(timeout, 1.0)):
            if signum in RELOAD_SIGNALS:
                self._request_reload(signum.name)
            else:
                return signum
        return None

    def _stop_now(self, signum: signal.Signals) -> int:
        runs = self._config.config.runs
        logger.warning(
            "received %s again: stopping %d run(s) now (%s, SIGKILL after %gs; send it a third time to kill them)",
            signum.name,
            len(self._runs.running()),
            runs.stop_signal,
            runs.stop_grace,
        )
        self._runs.shutdown_all(immediate=False)
        self._wait_stopped()
        return 128 + signum

    def _wait_stopped(self) -> None:
        """Wait for stopped runs to end and report; a further stop signal sends SIGKILL at once."""
        limit = time.monotonic() + self._config.config.runs.stop_grace + 30.0
        escalated = False
        while (running := self._runs.running()) and time.monotonic() < limit:
            signum = self._wait_signal(limit - time.monotonic())
            if signum is not None and not escalated:
                escalated = True
                logger.warning("received %s: killing %d run(s) at once (SIGKILL)", signum.name, len(running))
                self._runs.shutdown_all(immediate=True)
        if running:
            logger.error("%d run(s) did not report their end in time: %s", len(running), [h.run_id for h in running])

    def _close(self) -> None:
        self._life.stopping.set()
        self._life.slot_freed.set()
        self._runs.close_intake()
        self._life.closed.set()
        self._life.beat_now.set()
        self._life.not_claiming.set()
        self._leftovers.stop(timeout=0.5)  # what it could not deliver stays for the next start
        for thread in self._threads:
            if thread is not threading.current_thread():
                # The claim thread may sit in a long poll; the process exit closes that connection.
                thread.join(timeout=0.5)
        self._health.stop()
        # Runs free their slot once their final state is queued; deliver those before the API (the
        # embedded one in particular) goes away.
        self._pending.wait(self._delivery_grace)  # logs what it had to give up on
        self._state_batchers.close()
        self._session.disconnect()
        self._session.close()
        self._runs.close()
        logger.info("agent stopped")

    def _run_finished(self) -> None:
        self._life.slot_freed.set()
        if self._life.stopping.is_set():  # a drain waits for runs to end (set before it counts them)
            self._inbox.notify()

    # -- health ------------------------------------------------------------------------------------

    def health_report(self) -> tuple[bool, dict[str, Any]]:
        """``(healthy, body)`` for ``/health``: unhealthy once no poll succeeded for three poll intervals."""
        return health_report(
            self._config, self._session, self._runs, self._contact, draining=self._life.stopping.is_set()
        )
