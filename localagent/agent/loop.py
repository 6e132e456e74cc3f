"""The agent loop: register, heartbeat, claim runs for the free slots, start them, drain on shutdown.

Usage::

    agent = Agent(loaded, load=load, reaper=reaper, console=console, metrics=metrics, inbox=inbox)
    with handle_signals(inbox):
        exit_code = agent.run()     # start-up, loop, shut-down

Threads: the caller's thread supervises (signals, reloads, drain); ``localagent-claim`` registers and
long-polls claims; ``localagent-heartbeat`` reports what runs here (to the API in force, and to an API a
reload left behind while runs it handed out still run) and picks up cancels; while every slot is busy (or
the agent drains) ``localagent-cancel-watch`` long-polls with ``slots = 0`` so a cancel arrives at once.
Each claimed run becomes a :class:`RunExecution` (or whatever ``execution_factory`` builds, for tests) with
a client scoped to that run's token on the API that handed it out. Output an earlier agent left in
``state_dir`` is set aside before the first claim and, once registered, delivered by ``localagent-leftovers``
(:mod:`localagent.agent.leftovers`).

The config in force is one frozen :class:`LoadedConfig`, swapped atomically by :meth:`Agent.apply_config`.
Anything that reloads config (SIGHUP here; a file watcher) builds a new ``LoadedConfig`` with the
original ``load`` and calls ``agent.apply_config(new)``; a refused config goes to ``agent.reject_config(exc)``.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from localagent.agent.health import HealthServer
from localagent.agent.leftovers import LeftoverSpools
from localagent.agent.logs import configure_logging
from localagent.agent.metrics import AgentMetrics
from localagent.agent.registration import RUN_CONFIG_TYPES, AgentSession
from localagent.agent.reporter import PendingDeliveries
from localagent.agent.run_table import ExecutionFactory, RunOrigin, RunTable, default_execution_factory
from localagent.agent.signals import RELOAD_SIGNALS, SignalInbox
from localagent.agent.state_batch import StateBatchers
from localagent.api.models import ClaimedRun, ClaimRequest
from localagent.api.port import OrchestratorFactory
from localagent.config.render import public_hash
from localagent.errors import ApiError, ApiNotFound, ConfigError, ServiceError

if TYPE_CHECKING:
    from localagent.agent.console import ConsolePrinter
    from localagent.agent.reaper import ChildReaper
    from localagent.api.port import RunChannel
    from localagent.config import LoadedConfig
    from localagent.config.model import AgentConfig

logger = logging.getLogger("localagent.agent")

UNCAPPED_CLAIM = 32  # runs asked for per claim when max_concurrent_runs = 0 (no cap)
EXIT_OK = 0
EXIT_FAILED = 1  # the claim loop failed unexpectedly (logged with its traceback)
EXIT_RUNS_STOPPED = 1  # max_polls reached, but runs outlived drain_timeout and had to be stopped
_FIRST_RETRY = 0.25  # seconds before the cancel watch looks again for a registration
DELIVERY_GRACE_ON_EXIT = 10.0  # seconds a shutdown waits for queued final states and output
LEFTOVER_WAIT = 30.0  # seconds the first claim waits for output an earlier agent left to reach the API


class Agent:
    """One agent: owns the claim loop, the heartbeat, the health endpoint and the runs it started.

    ``Agent(loaded, load=load, reaper=..., console=..., metrics=..., inbox=...).run() -> exit code``

    Reload seam: ``apply_config(new)`` makes a config current (live, nothing restarts), ``reject_config(exc)``
    keeps the current one and reports the error; ``set_reload_handler(fn)`` routes SIGHUP to ``fn("SIGHUP")``
    (default :meth:`reload`); ``closed`` is a stop event for a file watcher; ``set_embedded_url`` follows an
    embedded API that re-bound; ``set_listener_sweep(fn)`` has ``fn(urls)`` called at every heartbeat with
    the urls runs still report to (so an embedded listener left behind can stop once unused). All of these
    are safe to call from any thread.
    """

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        load: Callable[[], LoadedConfig],
        reaper: ChildReaper,
        console: ConsolePrinter,
        metrics: AgentMetrics,
        inbox: SignalInbox,
        embedded_url: str | None = None,
        client_factory: OrchestratorFactory,
        execution_factory: ExecutionFactory | None = None,
    ) -> None:
        self._load = load
        self._console = console
        self._metrics = metrics
        self._inbox = inbox
        self._lock = threading.Lock()
        self._loaded = loaded
        self._generation = 1
        self._config_error: str | None = None
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
        self._stopping = threading.Event()  # stop claiming
        self._closed = threading.Event()  # heartbeat and everything else stop
        self._slot_freed = threading.Event()
        self._claims_over = threading.Event()  # the claim loop ended (max_polls, or it failed)
        self._beat_now = threading.Event()  # heartbeat at once (a new config, a shutdown)
        self._not_claiming = threading.Event()  # every slot busy, or draining: the cancel watch long-polls
        self._claiming: RunOrigin | None = None  # where the claim in flight went
        self._listener_sweep: Callable[[set[str]], None] | None = None
        self._claim_loop_failed = False
        self._claim_thread: threading.Thread | None = None
        self._heartbeat_thread: threading.Thread | None = None
        self._cancel_watch_thread: threading.Thread | None = None
        self._started_at = time.monotonic()
        self._last_contact: float | None = None  # monotonic time of the last successful poll or heartbeat
        self._last_contact_wall: datetime | None = None
        self._session = AgentSession(
            config_state=self._config_state,
            embedded_url=embedded_url,
            client_factory=client_factory,
            on_contact=self._mark_contact,
        )
        self._health = HealthServer(report=self.health_report, metrics=metrics)
        self._leftovers = LeftoverSpools(loaded.config.agent.state_dir / "spool", metrics=metrics)
        self._reload_handler: Callable[[str], object] = lambda trigger: self.reload()
        metrics.track_running(lambda: len(self._runs))
        console.enabled = loaded.config.logs.show_flow_logs

    # -- the config in force -------------------------------------------------------------------------

    @property
    def loaded(self) -> LoadedConfig:
        return self._loaded

    @property
    def generation(self) -> int:
        return self._generation

    def _config_state(self) -> tuple[LoadedConfig, int, str | None]:
        with self._lock:
            return self._loaded, self._generation, self._config_error

    def apply_config(self, loaded: LoadedConfig) -> None:
        """Make ``loaded`` the config in force, at once, without stopping anything.

        Labels, limits, the poll interval and run defaults apply from the next claim (runs already started
        keep the config they started with); ``logs.show_flow_logs``, ``logs.level`` and ``logs.format`` apply
        at once; ``health.address`` re-binds; a new ``api.url``/key moves registration and claims to the new
        API while started runs keep their own client. The config generation goes up by one.
        """
        with self._lock:
            old = self._loaded
            self._loaded = loaded
            self._generation += 1
            self._config_error = None
        config = loaded.config
        self._console.enabled = config.logs.show_flow_logs
        if (config.logs.level, config.logs.format) != (old.config.logs.level, old.config.logs.format):
            configure_logging(config.logs)
        if config.health.address != old.config.health.address:
            try:
                self._health.rebind(config.health.address)
            except ServiceError as exc:
                logger.error("%s", exc)
        self._slot_freed.set()  # a raised max_concurrent_runs frees slots now
        # Tell the API the new labels (and generation) now: a claim long-poll still waiting with the old
        # labels then returns, and the next claim asks with the new ones.
        self._beat_now.set()
        self._metrics.observe_reload(ok=True)

    def reject_config(self, error: ConfigError) -> None:
        """Keep the config in force; log ``error`` as ``config validate`` prints it and report it until fixed."""
        message = str(error)
        with self._lock:
            self._config_error = message
            generation = self._generation
        count = len(error.problems)
        # The same lines `localagent config validate` prints for this config.
        logger.error(
            "config reload refused, keeping generation %d:\n%s\nconfig is invalid: %d problem%s",
            generation,
            message,
            count,
            "s" if count != 1 else "",
        )
        self._beat_now.set()  # report config.error to the API now
        self._metrics.observe_reload(ok=False)

    @property
    def closed(self) -> threading.Event:
        """Set once the agent shuts down: a stop event for helpers tied to its life (a config watcher)."""
        return self._closed

    def set_reload_handler(self, handler: Callable[[str], object]) -> None:
        """Route reload requests (SIGHUP, called with ``"SIGHUP"``) to ``handler`` instead of :meth:`reload`."""
        self._reload_handler = handler

    def set_embedded_url(self, url: str) -> None:
        """The embedded API moved (``server.address`` re-bound): claim there from now on (same agent id)."""
        self._session.set_embedded_url(url)

    def set_listener_sweep(self, sweep: Callable[[set[str]], None]) -> None:
        """Call ``sweep(urls)`` at every heartbeat with the urls that runs (or a claim in flight) still use."""
        self._listener_sweep = sweep

    def _request_reload(self, trigger: str) -> None:
        try:
            self._reload_handler(trigger)
        except Exception:
            logger.exception("config reload (%s) failed; keeping the config in force", trigger)

    def reload(self) -> None:
        """Re-run the original load and apply it, or keep the last good config when it is invalid."""
        try:
            loaded = self._load()
        except ConfigError as exc:
            self.reject_config(exc)
            return
        if loaded.hash == self._loaded.hash and self._config_error is None:
            logger.info("config reload: nothing changed (generation %d)", self._generation)
            return
        self.apply_config(loaded)
        logger.info("config reloaded: generation %d (hash %s)", self._generation, public_hash(loaded)[:12])

    # -- run ----------------------------------------------------------------------------------------

    def run(self) -> int:
        """Start up, serve until a stop signal (or ``max_polls``), drain, shut down; return the exit code."""
        self._start()
        try:
            stop_signal = self._serve()
            exit_code = self._drain(stop_signal)
            return EXIT_FAILED if self._claim_loop_failed and exit_code == EXIT_OK else exit_code
        finally:
            self._close()

    def _start(self) -> None:
        config = self._loaded.config
        if config.health.address:
            self._health.start(config.health.address)
        labels = ", ".join(config.agent.effective_labels()) or "none"
        logger.info(
            "agent %r starting: labels [%s]%s, API %s%s, max_concurrent_runs %s",
            config.agent.name,
            labels,
            " + unlabeled runs" if config.agent.run_unlabeled else "",
            self._session.api_url(),
            " (embedded)" if config.api.url == "embedded" else "",
            config.agent.max_concurrent_runs or "unlimited",
        )
        self._leftovers.collect()  # before the first claim: a run claimed again starts its spool afresh
        self._claim_thread = threading.Thread(target=self._claim_loop, name="localagent-claim", daemon=True)
        self._heartbeat_thread = threading.Thread(target=self._heartbeat_loop, name="localagent-heartbeat", daemon=True)
        self._cancel_watch_thread = threading.Thread(
            target=self._cancel_watch_loop, name="localagent-cancel-watch", daemon=True
        )
        self._claim_thread.start()
        self._heartbeat_thread.start()
        self._cancel_watch_thread.start()

    def _serve(self) -> signal.Signals | None:
        """Wait for a stop signal (returned) or the end of the claim loop (None); reload on SIGHUP."""
        while True:
            for signum in self._inbox.wait(timeout=None):
                if signum in RELOAD_SIGNALS:
                    self._request_reload(signum.name)
                else:
                    return signum
            if self._claims_over.is_set():
                return None

    def _drain(self, stop_signal: signal.Signals | None) -> int:
        self._stopping.set()
        self._slot_freed.set()
        if stop_signal is not None:  # (after max_polls the agent polls no more)
            self._not_claiming.set()  # cancels keep arriving at once while runs drain
        drain_timeout = self._loaded.config.runs.drain_timeout
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
        logger.warning("received %s again: stopping %d run(s) now", signum.name, len(self._runs.running()))
        self._runs.shutdown_all(immediate=True)
        self._wait_stopped(escalated=True)
        return 128 + signum

    def _wait_stopped(self, *, escalated: bool = False) -> None:
        """Wait for stopped runs to end and report; a further stop signal sends SIGKILL at once."""
        limit = time.monotonic() + self._loaded.config.runs.stop_grace + 30.0
        while (running := self._runs.running()) and time.monotonic() < limit:
            signum = self._wait_signal(limit - time.monotonic())
            if signum is not None and not escalated:
                escalated = True
                self._runs.shutdown_all(immediate=True)
        if running:
            logger.error("%d run(s) did not report their end in time: %s", len(running), [h.run_id for h in running])

    def _close(self) -> None:
        self._stopping.set()
        self._slot_freed.set()
        self._runs.close_intake()
        self._closed.set()
        self._beat_now.set()
        self._not_claiming.set()
        self._leftovers.stop(timeout=0.5)  # what it could not deliver stays for the next start
        for thread in (self._heartbeat_thread, self._claim_thread, self._cancel_watch_thread):
            if thread is not None and thread is not threading.current_thread():
                # The claim thread may sit in a long poll; the process exit closes that connection.
                thread.join(timeout=0.5)
        self._health.stop()
        # Runs free their slot once their final state is queued; deliver those before the API (the
        # embedded one in particular) goes away.
        self._pending.wait(DELIVERY_GRACE_ON_EXIT)  # logs what it had to give up on
        self._state_batchers.close()
        self._session.close()
        self._runs.close()
        logger.info("agent stopped")

    # -- claims -------------------------------------------------------------------------------------

    def _free_slots(self, config: AgentConfig) -> int:
        cap = config.agent.max_concurrent_runs
        if cap == 0:
            return UNCAPPED_CLAIM
        return max(0, cap - len(self._runs.running()))

    def _claim_loop(self) -> None:
        polls = 0
        backoff = 0.0
        try:
            while not self._stopping.is_set():
                endpoint = self._session.ensure_registered(self._stopping)
                if endpoint is None or self._stopping.is_set():
                    return
                if self._leftovers.start(endpoint.api, endpoint.client):  # the first time only
                    self._await_leftovers()
                loaded = self._loaded
                config = loaded.config
                slots = self._free_slots(config)
                if slots == 0:
                    self._slot_freed.clear()
                    if self._free_slots(config) == 0:
                        self._not_claiming.set()
                        self._slot_freed.wait(config.agent.poll_interval)
                        if not self._stopping.is_set():  # a drain keeps the cancel watch going
                            self._not_claiming.clear()
                    continue
                request = self._claim_request(config, slots)
                origin = RunOrigin(endpoint.api, endpoint.client.url)
                self._claiming = origin
                began = time.monotonic()
                polls += 1
                try:
                    reply = endpoint.client.claim(endpoint.agent_id, request)
                except ApiNotFound:
                    self._claiming = None
                    self._metrics.observe_poll(time.monotonic() - began, ok=False)
                    self._session.forget(endpoint.agent_id, "the API no longer knows this agent")
                    continue
                except ApiError as exc:
                    self._claiming = None
                    self._metrics.observe_poll(time.monotonic() - began, ok=False)
                    if self._stopping.is_set():
                        return  # e.g. the embedded API stopped under a poll that outlived the shutdown
                    backoff = min(max(backoff * 2, 0.25), config.agent.poll_interval)
                    self._session.report_failure("claim", exc, config.agent.poll_interval)
                    self._stopping.wait(backoff)
                else:
                    backoff = 0.0
                    self._metrics.observe_poll(time.monotonic() - began, ok=True)
                    self._mark_contact()
                    self._session.report_recovery()
                    batcher = self._state_batchers.for_api(endpoint.client)
                    self._runs.start(reply.runs, config, self._run_clients(origin.url, config), origin, batcher)
                    self._claiming = None
                    self._runs.cancel(reply.cancel)
                if config.agent.max_polls and polls >= config.agent.max_polls:
                    logger.info("max_polls (%d) reached: no more claims", config.agent.max_polls)
                    return
        except Exception:
            self._claim_loop_failed = True
            logger.exception("the claim loop failed; stopping the agent")
        finally:
            self._claims_over.set()
            self._inbox.notify()

    def _await_leftovers(self) -> None:
        """Let output an earlier agent left reach the API before the first claim, for up to LEFTOVER_WAIT.

        A run of that agent that the API has since retried may be claimed again; its new attempt numbers its
        lines after the last one the API has, so the old attempt's lines must be there first, or the two
        would share seqs (and the API would keep only one line of each pair).
        """
        deadline = time.monotonic() + LEFTOVER_WAIT
        while not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                logger.warning(
                    "output left by an earlier agent is still being delivered after %gs; claiming anyway "
                    "(a retried run of that agent may then lose some of its first attempt's lines)",
                    LEFTOVER_WAIT,
                )
                return
            if self._leftovers.join(min(remaining, 0.5)):
                return

    @staticmethod
    def _claim_request(config: AgentConfig, slots: int) -> ClaimRequest:
        return ClaimRequest(
            slots=slots,
            wait=config.agent.poll_interval,
            labels=list(config.agent.effective_labels()),
            run_unlabeled=config.agent.run_unlabeled,
            run_config_types=list(RUN_CONFIG_TYPES),
        )

    def _cancel_watch_loop(self) -> None:
        """While no claim can be made (every slot busy, or draining), long-poll with ``slots = 0``.

        The API answers such a poll as soon as one of this agent's runs is to be cancelled, so a cancel
        reaches a full agent at once instead of with the next heartbeat.
        """
        while True:
            self._not_claiming.wait()
            if self._closed.is_set():
                return
            endpoint = self._session.endpoint()
            config = self._loaded.config
            if endpoint is None:
                self._closed.wait(_FIRST_RETRY)
                continue
            try:
                reply = endpoint.client.claim(endpoint.agent_id, self._claim_request(config, 0))
            except ApiError as exc:
                logger.debug("cancel watch poll failed: %s", exc)
                self._closed.wait(min(config.agent.poll_interval, 1.0))
                continue
            except Exception:
                logger.exception("the cancel watch failed unexpectedly")
                self._closed.wait(config.agent.poll_interval)
                continue
            self._mark_contact()
            self._runs.cancel(reply.cancel)

    def _run_clients(self, url: str, config: AgentConfig) -> Callable[[ClaimedRun], RunChannel]:
        """Run-scoped clients on the API at ``url`` (the one that handed the runs out)."""

        def client_for(claimed: ClaimedRun) -> RunChannel:
            return self._session.run_client(url, claimed.token, config)

        return client_for

    def _run_finished(self) -> None:
        self._slot_freed.set()
        if self._stopping.is_set():  # a drain waits for runs to end (set before it counts them)
            self._inbox.notify()

    # -- heartbeat and health ------------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        while True:
            self._beat_now.wait(min(self._loaded.config.agent.poll_interval, 10.0))
            if self._closed.is_set():
                return
            self._beat_now.clear()
            try:
                cancels = self._session.heartbeat(self._runs.ids, keep=self._claim_in_flight_on)
            except Exception:
                logger.exception("heartbeat failed unexpectedly")
                cancels = []
            self._runs.cancel(cancels)
            self._sweep_listeners()

    def _claim_in_flight_on(self, api: str) -> bool:
        claiming = self._claiming
        return claiming is not None and claiming.api == api

    def _sweep_listeners(self) -> None:
        sweep = self._listener_sweep
        if sweep is None:
            return
        in_use = {origin.url for origin in self._runs.origins()}
        claiming = self._claiming
        if claiming is not None:
            in_use.add(claiming.url)
        try:
            sweep(in_use)
        except Exception:
            logger.exception("stopping an unused embedded API listener failed")

    def _mark_contact(self) -> None:
        self._last_contact = time.monotonic()
        self._last_contact_wall = datetime.now(timezone.utc)

    def health_report(self) -> tuple[bool, dict[str, Any]]:
        """``(healthy, body)`` for ``/health``: unhealthy once no poll succeeded for three poll intervals."""
        loaded, generation, error = self._config_state()
        config = loaded.config
        since = self._last_contact if self._last_contact is not None else self._started_at
        silent_for = time.monotonic() - since
        healthy = silent_for <= 3 * config.agent.poll_interval
        running = self._runs.ids()
        body: dict[str, Any] = {
            "status": "ok" if healthy else "unhealthy",
            "agent": {
                "name": config.agent.name,
                "id": self._session.agent_id,
                "labels": list(config.agent.effective_labels()),
                "run_unlabeled": config.agent.run_unlabeled,
            },
            "api": {
                "url": self._session.api_url(),
                "embedded": config.api.url == "embedded",
                "left_behind": self._session.left_behind(),
            },
            "config": {
                "files": [str(path) for path in loaded.files],
                "generation": generation,
                "hash": public_hash(loaded),
                "error": error,
            },
            "last_poll": self._last_contact_wall.isoformat() if self._last_contact_wall else None,
            "seconds_since_last_poll": round(silent_for, 3) if self._last_contact is not None else None,
            "runs_running": len(running),
            "running_runs": running,
            "draining": self._stopping.is_set(),
        }
        return healthy, body
