"""The agent's Prometheus metrics, kept in a registry of its own (served on ``/metrics``).

Usage::

    metrics = AgentMetrics()
    metrics.run_started()
    metrics.run_finished(StateName.SUCCESS)
    metrics.observe_poll(0.012, ok=True)
    metrics.render()  # b"# HELP localagent_runs_started_total ..."

A registry per instance (never the global one) keeps two agents in one process, and the tests, apart.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from localagent.api.models import StateName

# Claims long-poll, so a healthy idle poll takes about poll_interval; the upper buckets catch those.
_POLL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class AgentMetrics:
    """Counters, gauges and histograms of one agent. Thread-safe (prometheus_client locks internally)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._runs_started = Counter(
            "localagent_runs_started", "Flow run processes started by this agent.", registry=self.registry
        )
        self._runs_finished = Counter(
            "localagent_runs_finished",
            "Flow runs this agent finished, by final state.",
            ["state"],
            registry=self.registry,
        )
        for state in (StateName.SUCCESS, StateName.FAILED, StateName.CANCELLED, StateName.CRASHED):
            self._runs_finished.labels(state=state.value)
        self._runs_running = Gauge(
            "localagent_runs_running", "Flow runs this agent is running now.", registry=self.registry
        )
        self._running_source: Callable[[], int] | None = None
        self._poll_seconds = Histogram(
            "localagent_poll_seconds",
            "Duration of claim requests (long polls) to the API.",
            buckets=_POLL_BUCKETS,
            registry=self.registry,
        )
        self._polls = Counter(
            "localagent_polls", "Claim requests to the API, by result.", ["result"], registry=self.registry
        )
        for result in ("ok", "error"):
            self._polls.labels(result=result)
        self._reloads = Counter("localagent_reloads", "Config reloads applied.", registry=self.registry)
        self._reload_errors = Counter(
            "localagent_reload_errors",
            "Config reloads refused because the new config is invalid.",
            registry=self.registry,
        )
        self._log_lines = Counter(
            "localagent_log_lines",
            "Run output lines, by outcome: shipped to the API, spooled to disk while it is unreachable, dropped "
            "(past logs.max_run_output), lost (could not be written to state_dir).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("shipped", "spooled", "dropped", "lost"):
            self._log_lines.labels(outcome=outcome)
        self._lost_bytes = Counter(
            "localagent_log_bytes_lost",
            "Run output bytes read but lost because they could not be written to state_dir (disk full).",
            registry=self.registry,
        )
        self._api_switches = Counter(
            "localagent_api_failovers",
            "Switches between the URLs of api.url: 'failover' (away from a URL that failed), 'failback' (back to "
            "the first URL once it answers again).",
            ["direction"],
            registry=self.registry,
        )
        for direction in ("failover", "failback"):
            self._api_switches.labels(direction=direction)

    def run_started(self) -> None:
        """A run's process started."""
        self._runs_started.inc()
        if self._running_source is None:
            self._runs_running.inc()

    def run_finished(self, state: StateName) -> None:
        """A run reached its final ``state``."""
        self._runs_finished.labels(state=StateName(state).value).inc()
        if self._running_source is None:
            self._runs_running.dec()

    def track_running(self, source: Callable[[], int]) -> None:
        """Read the running-runs gauge from ``source`` (the loop's run table) instead of counting starts and ends.

        Runs that fail before their process starts still finish, so counting alone could go below zero.
        """
        self._running_source = source
        self._runs_running.set_function(lambda: float(source()))

    def observe_log_lines(self, *, shipped: int = 0, spooled: int = 0, dropped: int = 0) -> None:
        """Count run output lines shipped to the API, spooled to disk, or dropped (past the output cap)."""
        for outcome, count in (("shipped", shipped), ("spooled", spooled), ("dropped", dropped)):
            if count:
                self._log_lines.labels(outcome=outcome).inc(count)

    def observe_output_lost(self, *, lines: int, size: int) -> None:
        """Count run output that could not be written to ``state_dir`` (``size`` bytes, ``lines`` lines)."""
        if size:
            self._log_lines.labels(outcome="lost").inc(lines)
            self._lost_bytes.inc(size)

    def observe_poll(self, seconds: float, *, ok: bool) -> None:
        """One claim request took ``seconds``; ``ok`` is False when it failed."""
        self._poll_seconds.observe(max(seconds, 0.0))
        self._polls.labels(result="ok" if ok else "error").inc()

    def count_api_switch(self, direction: str) -> None:
        """The agent moved to another API URL (``"failover"``) or back to the first one (``"failback"``)."""
        self._api_switches.labels(direction=direction).inc()

    def observe_reload(self, *, ok: bool) -> None:
        """A config reload was applied (``ok``) or refused."""
        if ok:
            self._reloads.inc()
        else:
            self._reload_errors.inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return bytes(generate_latest(self.registry))
