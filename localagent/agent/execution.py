"""One claimed run on this host: check, start, watch, stop, and report its states and output.

Usage::

    ex = RunExecution(claimed, config, api, reaper=reaper, console=console, metrics=metrics)
    ex.start()          # returns at once; the work runs in threads
    ex.cancel()         # stop_signal to the process group, SIGKILL after stop_grace -> Cancelled
    ex.done.wait()      # the process is gone and the final state was delivered

``api`` is the run-scoped client (the API that handed out the run, with the run's token).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from localagent.agent.console import ConsoleFollower, ConsolePrinter
from localagent.agent.launcher import plan_launch
from localagent.agent.output import OutputPump
from localagent.agent.reporter import StateReporter
from localagent.agent.shipper import LogShipper
from localagent.agent.spool import RunSpool
from localagent.api.models import ClaimedRun, StateName, StateUpdate
from localagent.config.units import format_duration
from localagent.errors import LaunchError

if TYPE_CHECKING:
    from localagent.agent.metrics import AgentMetrics
    from localagent.agent.reaper import ChildProcess, ChildReaper
    from localagent.api.client import ApiClient
    from localagent.config.model import AgentConfig

log = logging.getLogger("localagent.run")

OUTPUT_DRAIN = 5.0  # after the process group is gone, how long a pipe held by an escaped process is read on
DELIVERY_GRACE = 10.0  # on shutdown, how long output and the final state may wait for an unreachable API


@dataclass(frozen=True)
class _StopRequest:
    kind: str  # "cancel", "shutdown" or "timeout"
    message: str
    immediate: bool = False


class RunExecution:
    """One claimed run on this host: check, start, watch, stop, report its states and output."""

    def __init__(
        self,
        claimed: ClaimedRun,
        config: AgentConfig,
        api: ApiClient,
        *,
        reaper: ChildReaper,
        console: ConsolePrinter,
        metrics: AgentMetrics | None = None,
        on_finished: Callable[[RunExecution], None] | None = None,
        delivery_grace: float = DELIVERY_GRACE,
    ) -> None:
        self.claimed = claimed
        self.config = config
        self.run_id: str = claimed.run.id
        self.done = threading.Event()
        self.final_state: StateName | None = None
        self.final_update: StateUpdate | None = None
        self.pid: int | None = None
        self._api = api
        self._reaper = reaper
        self._console = console
        self._metrics = metrics
        self._on_finished = on_finished
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop: _StopRequest | None = None
        self._give_up_at: float | None = None
        self._delivery_grace = delivery_grace
        self._reporter = StateReporter(api, self.run_id)
        self._label = f"{claimed.run.flow}/{claimed.run.name}"

    def start(self) -> None:
        self._reporter.start(name=f"state-{self.claimed.run.name}")
        threading.Thread(target=self._run, name=f"run-{self.claimed.run.name}", daemon=True).start()

    def cancel(self, message: str = "cancelled on request") -> None:
        self._request_stop(_StopRequest("cancel", message))

    def shutdown(self, message: str = "agent shut down", *, immediate: bool = False) -> None:
        with self._lock:
            if self._give_up_at is None:
                self._give_up_at = time.monotonic() + self._delivery_grace
        self._request_stop(_StopRequest("shutdown", message, immediate))

    def _request_stop(self, request: _StopRequest) -> None:
        with self._lock:
            if self._stop is None:
                self._stop = request
            elif request.immediate and not self._stop.immediate:
                self._stop = replace(self._stop, immediate=True)
        self._wake.set()

    def _run(self) -> None:
        try:
            final = self._execute()
        except Exception as exc:
            log.exception("run %s (%s) failed in the agent", self.run_id, self._label)
            final = StateUpdate(state=StateName.FAILED, message=f"the agent failed running this run: {exc}")
        log.info("run %s (%s) ended %s: %s", self.run_id, self._label, final.state.value, final.message)
        self._reporter.report(final)
        self._reporter.close()
        self._wait_delivery(self._reporter.join, self._reporter.give_up)
        self.final_update = final
        self.final_state = final.state
        if self._metrics is not None:
            self._metrics.run_finished(final.state)
        self.done.set()
        if self._on_finished is not None:
            try:
                self._on_finished(self)
            except Exception:
                log.exception("run %s: the on_finished callback failed", self.run_id)

    def _execute(self) -> StateUpdate:
        run, config = self.claimed.run, self.config
        if self._stop is not None:
            return StateUpdate(state=StateName.CANCELLED, message=self._stop.message)
        try:
            plan = plan_launch(self.claimed, config, api_url=self._api.url)
        except LaunchError as exc:
            log.warning("run %s (%s) cannot start: %s", self.run_id, self._label, exc)
            return StateUpdate(state=StateName.FAILED, message=str(exc))
        spool = RunSpool.create(config.agent.state_dir / "spool" / self.run_id)
        with self._lock:
            if self._stop is not None:
                spool.remove()
                return StateUpdate(state=StateName.CANCELLED, message=self._stop.message)
            try:
                proc = self._reaper.spawn(
                    plan.argv, cwd=plan.cwd, env=plan.env, executable=plan.executable, on_exit=self._on_exit
                )
            except OSError as exc:
                spool.remove()
                reason = exc.strerror or str(exc)
                return StateUpdate(state=StateName.FAILED, message=f"could not start {plan.argv[0]!r}: {reason}")
            self.pid = proc.pid
        if self._metrics is not None:
            self._metrics.run_started()
        log.info("run %s (%s) started as pid %d in %s", self.run_id, self._label, proc.pid, plan.cwd)
        self._reporter.report(StateUpdate(state=StateName.RUNNING, pid=proc.pid))

        pump = OutputPump(spool, max_output=config.logs.max_run_output)
        pump.start(proc.stdout_fd, proc.stderr_fd, name=f"output-{run.name}")
        follower = ConsoleFollower(spool, self._console, prefix=f"[{self._label}] ")
        follower.start(name=f"console-{run.name}")
        shipper: LogShipper | None = None
        if config.logs.send_to_api:
            shipper = LogShipper(
                spool, self._api, self.run_id, first_seq=self.claimed.next_log_seq, metrics=self._metrics
            )
            shipper.start(name=f"logs-{run.name}")

        stopped_by_us = self._watch(proc)
        self._finish_output(proc, pump)
        follower.join(OUTPUT_DRAIN)
        follower.stop()
        follower.join(1.0)
        if pump.cut_lines and self._metrics is not None:
            self._metrics.observe_log_lines(dropped=pump.cut_lines)
        if shipper is not None:
            self._wait_delivery(shipper.join, shipper.give_up)
        if shipper is None or shipper.delivered or shipper.refused:
            spool.remove()
        else:
            log.warning("run %s: undelivered output is kept in %s", self.run_id, spool.directory)
            spool.release()
        return self._outcome(proc, stopped_by_us)

    def _on_exit(self, _proc: ChildProcess) -> None:
        self._wake.set()

    def _watch(self, proc: ChildProcess) -> bool:
        """Wait for the process to exit, stopping it on cancel, shutdown or timeout; ``True`` if we stopped it."""
        runs = self.config.runs
        timeout = self.claimed.flow.timeout
        timeout_at = time.monotonic() + timeout if timeout else None
        stop_signal = signal.Signals[runs.stop_signal]
        signalled_at: float | None = None
        killed = False
        while not proc.exited.is_set():
            now = time.monotonic()
            if self._stop is None and timeout_at is not None and now >= timeout_at:
                self._request_stop(_StopRequest("timeout", f"timed out after {format_duration(timeout or 0)}"))
            request = self._stop
            if request is not None and not killed:
                if request.immediate or (signalled_at is not None and now >= signalled_at + runs.stop_grace):
                    log.info("run %s: sending SIGKILL to process group %d", self.run_id, proc.pid)
                    proc.signal_group(signal.SIGKILL)
                    killed = True
                elif signalled_at is None:
                    log.info(
                        "run %s: %s; sending %s to process group %d",
                        self.run_id,
                        request.message,
                        stop_signal.name,
                        proc.pid,
                    )
                    proc.signal_group(stop_signal)
                    signalled_at = now
            if request is None:
                wait = timeout_at - now if timeout_at is not None else None
            elif signalled_at is not None and not killed:
                wait = signalled_at + runs.stop_grace - now
            else:
                wait = 1.0
            self._wake.wait(max(wait, 0.0) if wait is not None else None)
            self._wake.clear()
        return signalled_at is not None or killed

    def _finish_output(self, proc: ChildProcess, pump: OutputPump) -> None:
        # The reaper killed what was left of the process group, so the pipes normally close at once; a
        # process that left the group (setsid) may still hold them: read on briefly, then let go.
        if not pump.join(OUTPUT_DRAIN):
            log.warning("run %s: a process outside the run's process group holds its output open", self.run_id)
            pump.abandon()
            pump.join()
        for stream in (proc.popen.stdout, proc.popen.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def _wait_delivery(self, join: Callable[[float], bool], give_up: Callable[[], None]) -> None:
        while not join(0.5):
            with self._lock:
                give_up_at = self._give_up_at
            if give_up_at is not None and time.monotonic() >= give_up_at:
                give_up()
                join(5.0)
                return

    def _outcome(self, proc: ChildProcess, stopped_by_us: bool) -> StateUpdate:
        code = proc.returncode if proc.returncode is not None else -1
        request = self._stop
        if stopped_by_us and request is not None:
            state = StateName.FAILED if request.kind == "timeout" else StateName.CANCELLED
            return StateUpdate(state=state, message=request.message, exit_code=code)
        if code == 0:
            return StateUpdate(state=StateName.SUCCESS, message="process exited with code 0", exit_code=0)
        if code < 0:
            message = f"process killed by signal {_signal_name(-code)}"
            return StateUpdate(state=StateName.FAILED, message=message, exit_code=code)
        return StateUpdate(state=StateName.FAILED, message=f"process exited with code {code}", exit_code=code)


def _signal_name(number: int) -> str:
    try:
        return f"{signal.Signals(number).name} ({number})"
    except ValueError:
        return str(number)
