"""One claimed run on this host: check, start, watch, stop, and report its states and output.

Usage::

    ex = RunExecution(claimed, config, api, reaper=reaper, console=console, metrics=metrics, on_finished=cb)
    ex.start()          # starts the process at once; the rest runs on a thread of its own
    ex.cancel()         # stop_signal to the process group, SIGKILL after stop_grace -> Cancelled
    ex.done.wait()      # the process is gone and the final state was delivered

``api`` is the run-scoped client (the API that handed out the run, with the run's token); ``origin`` names
that API. Output meant for the API is spooled with a ``meta.json`` naming the run, the API and the first
seq: output that could not be delivered before the agent stopped (or died) is delivered by the next agent
started on the same ``state_dir`` (:mod:`localagent.agent.run.leftovers`).

One thread per run: the *run* thread reads the output pipes and, between reads, watches the process (exit,
timeout, cancel and shutdown). ``on_finished`` is called (the slot is free) as soon as the process is gone
and its output is on disk; the same thread then delivers what is left (the rest of the output, the final
state) in the background, tracked in ``pending`` (the agent's
:class:`~localagent.agent.run.reporter.PendingDeliveries`) until it ends, so a shutdown can wait for it.

``Running`` goes into the agent's state batch when the process starts, without a thread waiting for it;
only when it must be sent alone (an API without batches) does a thread of its own send it. The output is
shipped while the run goes on by a *shipper* thread, started at the first output (a run that prints
nothing never has one); it ships only once ``Running`` is settled, so the API sees the states and lines
in order, and the final state is sent only after both.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from localagent.agent.coordination.session import api_name
from localagent.agent.coordination.state_batch import FALLBACK
from localagent.agent.processes.tracking import RunTag
from localagent.agent.retry import GiveUp
from localagent.agent.run.console import ConsoleFollower, ConsolePrinter, RunSource
from localagent.agent.run.launcher import plan_launch
from localagent.agent.run.output import OutputPump
from localagent.agent.run.reporter import PendingDeliveries, StateReporter
from localagent.agent.run.shipper import LogShipper
from localagent.agent.run.spool import RunSpool, SpoolMeta
from localagent.agent.run.stopping import StopPolicy, StopRequest, StopWatch, next_step
from localagent.api.models import ClaimedRun, StateName, StateUpdate
from localagent.errors import LaunchError

if TYPE_CHECKING:
    from localagent.agent.coordination.session import RunOrigin
    from localagent.agent.coordination.state_batch import StateBatcher, Ticket
    from localagent.agent.metrics import AgentMetrics
    from localagent.agent.run.reaper import ChildProcess, ChildReaper
    from localagent.api.port import RunChannel
    from localagent.config.model import AgentConfig

log = logging.getLogger("localagent.run")

OUTPUT_DRAIN = 5.0  # after the process group is gone, how long a pipe held by an escaped process is read on
# Run types whose process gets SIGTERM if the agent dies (even by SIGKILL), and runs.stop_grace from the
# watchdog before it kills what is left: a Prefect flow run's engine then reports it Crashed itself.
DIE_WITH_AGENT = frozenset({"prefect-process"})
DELIVERY_GRACE = 10.0  # on shutdown, how long output and the final state may wait for an unreachable API


class RunExecution:
    """One claimed run on this host: check, start, watch, stop, report its states and output."""

    def __init__(
        self,
        claimed: ClaimedRun,
        config: AgentConfig,
        api: RunChannel,
        *,
        reaper: ChildReaper,
        console: ConsolePrinter,
        metrics: AgentMetrics | None = None,
        on_finished: Callable[[RunExecution], None] | None = None,
        delivery_grace: float = DELIVERY_GRACE,
        state_batcher: StateBatcher | None = None,
        pending: PendingDeliveries | None = None,
        origin: RunOrigin | None = None,
        clock: Callable[[], float] = time.monotonic,
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
        self._stop: StopRequest | None = None
        self._delivery_grace = delivery_grace
        self._pending = pending
        self._api_name = origin.api if origin is not None else api_name(config)  # the API of the run
        # Where a successor reports the run if this agent dies: every URL of the API (failover), not only
        # the one in use now.
        self._api_urls = origin.url if origin is not None else api.url
        self._give_up = GiveUp()
        self._reporter = StateReporter(
            api, self.run_id, give_up=self._give_up, batcher=state_batcher, attempt=claimed.run.attempt
        )
        self._label = f"{claimed.run.flow}/{claimed.run.name}"
        self._running_settled = threading.Event()  # Running was delivered, refused or given up (or not due)
        self._ship_thread: threading.Thread | None = None
        self._spool: RunSpool | None = None
        self._pump: OutputPump | None = None
        self._shipper: LogShipper | None = None
        self._follower: ConsoleFollower | None = None
        self._output_seen = False
        self._clock = clock
        self._watch = StopWatch(timeout_at=None)

    def start(self) -> None:
        """Start the process on the caller's thread (no thread is made before it runs), then watch it."""
        if self._pending is not None:
            self._pending.add(self.run_id, self._give_up)
        name = self.claimed.run.name
        try:
            proc = self._launch()
        except Exception as exc:
            log.exception("run %s (%s) failed in the agent", self.run_id, self._label)
            proc = StateUpdate(state=StateName.FAILED, message=f"the agent failed running this run: {exc}")
        if isinstance(proc, StateUpdate):
            self._running_settled.set()
            self._end(proc)
            threading.Thread(target=self._deliver_rest, args=(proc,), name=f"deliver-{name}", daemon=True).start()
            return
        self._report_running(StateUpdate(state=StateName.RUNNING, pid=proc.pid))
        threading.Thread(target=self._run, args=(proc,), name=f"run-{name}", daemon=True).start()

    def cancel(self, message: str = "cancelled on request") -> None:
        self._request_stop(StopRequest("cancel", message))

    def shutdown(self, message: str = "agent shut down", *, immediate: bool = False) -> None:
        self._give_up.set_deadline(time.monotonic() + self._delivery_grace)
        self._request_stop(StopRequest("shutdown", message, immediate))

    def stop_api_lost(self, message: str) -> None:
        """The API is unreachable and ``runs.on_api_lost = "stop"``: stop the run; it ends Crashed."""
        self._request_stop(StopRequest("api_lost", message))

    def _request_stop(self, request: StopRequest) -> None:
        with self._lock:
            if self._stop is None:
                self._stop = request
            elif request.immediate and not self._stop.immediate:
                self._stop = replace(self._stop, immediate=True)
            pump = self._pump
        self._wake.set()
        if pump is not None:
            pump.wake()

    # -- the caller's thread: checks and the start ---------------------------------------------------

    def _launch(self) -> ChildProcess | StateUpdate:
        """The started process, or the final state when it cannot start."""
        config = self.config
        if self._stop is not None:
            return StateUpdate(state=StateName.CANCELLED, message=self._stop.message)
        try:
            plan = plan_launch(self.claimed, config, api_url=self._api.url)
        except LaunchError as exc:
            log.warning("run %s (%s) cannot start: %s", self.run_id, self._label, exc)
            return StateUpdate(state=StateName.FAILED, message=str(exc))
        meta = None
        if config.logs.send_to_api:  # what a later agent needs to deliver output this one could not
            meta = SpoolMeta(self.run_id, self._api_name, self.claimed.next_log_seq, self._label)
        spool = RunSpool.create(config.agent.state_dir / "spool" / self.run_id, meta)  # made on first output
        pump = OutputPump(spool, max_output=config.logs.max_run_output, on_data=self._on_output)
        with self._lock:
            if self._stop is not None:
                return StateUpdate(state=StateName.CANCELLED, message=self._stop.message)
            try:
                dies_with_agent = self.claimed.run.run_config_type in DIE_WITH_AGENT
                term_grace = config.runs.stop_grace if dies_with_agent else 0.0
                tag = RunTag(self.run_id, self._api_name, self._label, self.claimed.token, self._api_urls, term_grace)
                proc = self._reaper.spawn(
                    plan.argv,
                    cwd=plan.cwd,
                    env=plan.env,
                    executable=plan.executable,
                    on_exit=self._on_exit,
                    tag=tag,
                    parent_death_signal=signal.SIGTERM if dies_with_agent else None,
                )
            except OSError as exc:
                reason = exc.strerror or str(exc)
                return StateUpdate(state=StateName.FAILED, message=f"could not start {plan.argv[0]!r}: {reason}")
            self.pid = proc.pid
            self._spool, self._pump = spool, pump
        if self._metrics is not None:
            self._metrics.run_started()
        log.info("run %s (%s) started as pid %d in %s", self.run_id, self._label, proc.pid, plan.cwd)
        if config.logs.send_to_api:
            self._shipper = LogShipper(
                spool,
                self._api,
                self.run_id,
                first_seq=self.claimed.next_log_seq,
                metrics=self._metrics,
                give_up=self._give_up,
            )
        return proc

    # -- the run thread: output and the process -------------------------------------------------------

    def _run(self, proc: ChildProcess) -> None:
        try:
            final = self._execute(proc)
        except Exception as exc:
            log.exception("run %s (%s) failed in the agent", self.run_id, self._label)
            final = StateUpdate(state=StateName.FAILED, message=f"the agent failed running this run: {exc}")
        self._end(final)
        self._deliver_rest(final)

    def _execute(self, proc: ChildProcess) -> StateUpdate:
        pump = self._pump
        assert pump is not None
        self._watch = StopWatch.started(now=self._clock(), timeout=self.claimed.flow.timeout)
        pump.run(proc.stdout_fd, proc.stderr_fd, tick=lambda: self._tick(proc))
        while not proc.exited.is_set():  # the pipes closed first (or were let go): watch on without them
            self._wake.wait(self._tick(proc))
            self._wake.clear()
        for stream in (proc.popen.stdout, proc.popen.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        follower = self._follower
        if follower is not None:
            follower.join(OUTPUT_DRAIN)
            follower.stop()
            follower.join(1.0)
        if pump.cut_lines and self._metrics is not None:
            self._metrics.observe_log_lines(dropped=pump.cut_lines)
        final = self._outcome(proc, self._watch.stopped_by_us)
        loss = pump.loss_summary()  # output that could not be written (disk full): the state says so
        if loss is not None and self._metrics is not None:
            self._metrics.observe_output_lost(lines=pump.lost_lines, size=pump.lost_bytes)
        return final if loss is None else final.model_copy(update={"message": f"{final.message}; {loss}"})

    def _on_exit(self, _proc: ChildProcess) -> None:
        self._wake.set()
        pump = self._pump
        if pump is not None:
            pump.wake()

    def _on_output(self) -> None:
        """New output is in the spool: ship it, and follow it on the console once the console is on."""
        first, self._output_seen = not self._output_seen, True
        if first and self._shipper is not None:
            thread = threading.Thread(target=self._ship, name=f"ship-{self.claimed.run.name}", daemon=True)
            self._ship_thread = thread
            thread.start()
        if self._follower is None and self._console.enabled and self._spool is not None:
            # Switched on mid-run: like a follower that skipped while it was off, start at the current end.
            run = self.claimed.run
            follower = ConsoleFollower(
                self._spool,
                self._console,
                prefix=f"[{self._label}] ",
                from_end=not first,
                source=RunSource(run.id, run.flow, run.name),
            )
            follower.start(name=f"console-{self.claimed.run.name}")
            self._follower = follower

    def _tick(self, proc: ChildProcess) -> float | None:
        """One look at the process: act on :func:`next_step`; the seconds until the next look (None: no limit)."""
        runs = self.config.runs
        policy = StopPolicy(runs.stop_signal, runs.stop_grace, OUTPUT_DRAIN)
        self._watch, step = next_step(
            self._watch, self._clock(), exited=proc.exited.is_set(), request=self._stop, policy=policy
        )
        if step.timed_out is not None:
            self._request_stop(step.timed_out)
        request = self._stop
        if step.send == signal.SIGKILL:
            log.info("run %s: sending SIGKILL to process group %d", self.run_id, proc.pid)
            proc.signal_group(signal.SIGKILL)
        elif step.send is not None and request is not None:
            log.info(
                "run %s: %s; sending %s to process group %d", self.run_id, request.message, step.send.name, proc.pid
            )
            proc.signal_group(step.send)
        if step.abandon_output and self._pump is not None:
            # The reaper killed what was left of the process group, so the pipes normally close at once; a
            # process that left the group (setsid) may still hold them: we read on briefly, then let go.
            log.warning("run %s: a process outside the run's process group holds its output open", self.run_id)
            self._pump.abandon()
        return step.next_look

    def _end(self, final: StateUpdate) -> None:
        """The process is gone: free the slot; delivery goes on in the background."""
        log.info("run %s (%s) ended %s: %s", self.run_id, self._label, final.state.value, final.message)
        self.final_update = final
        self.final_state = final.state
        if self._metrics is not None:
            self._metrics.run_finished(final.state)
        if self._on_finished is not None:
            try:
                self._on_finished(self)
            except Exception:
                log.exception("run %s: the on_finished callback failed", self.run_id)

    # -- delivery: Running, the output, the final state -----------------------------------------------

    def _report_running(self, running: StateUpdate) -> None:
        """Queue ``Running`` in the state batch; a thread sends it alone only if the batch cannot take it."""

        def alone(ticket: Ticket | None) -> None:
            try:
                self._reporter.settle(running, ticket)
            except Exception:
                log.exception("run %s: reporting Running failed", self.run_id)
            finally:
                self._running_settled.set()

        def send_alone(ticket: Ticket | None) -> None:
            threading.Thread(target=alone, args=(ticket,), name=f"running-{self.claimed.run.name}", daemon=True).start()

        def settled(ticket: Ticket) -> None:  # on the batcher's thread: quick, never waits
            if ticket.outcome == FALLBACK:
                send_alone(ticket)
            else:
                alone(ticket)  # delivered, refused or given up: settling only records it

        if self._reporter.submit(running, on_done=settled) is None:  # no batcher
            send_alone(None)

    def _ship(self) -> None:
        """The shipper thread: once ``Running`` is settled, ship the output while the run goes on."""
        shipper = self._shipper
        assert shipper is not None
        self._running_settled.wait()
        shipper.run()

    def _deliver_rest(self, final: StateUpdate) -> None:
        """After the slot is freed: the rest of the output, then the final state; then clean the spool up."""
        try:
            self._running_settled.wait()
            shipper, thread = self._shipper, self._ship_thread
            if thread is not None:
                thread.join()
            elif shipper is not None:
                shipper.run()  # no output came (no shipper thread): it finds the spool empty and closed
            self._reporter.deliver(final)
            spool = self._spool
            if spool is not None:
                if shipper is None or shipper.delivered or shipper.refused:
                    spool.remove()
                else:
                    log.warning(
                        "run %s: undelivered output is kept in %s; the agent delivers it when it starts again",
                        self.run_id,
                        spool.directory,
                    )
                    spool.release()
        except Exception:
            log.exception("run %s: delivering its states and output failed", self.run_id)
        finally:
            self.done.set()
            if self._pending is not None:
                self._pending.discard(self.run_id)

    def _outcome(self, proc: ChildProcess, stopped_by_us: bool) -> StateUpdate:
        code = proc.returncode if proc.returncode is not None else -1
        request = self._stop
        if stopped_by_us and request is not None:
            state = _STOPPED_AS.get(request.kind, StateName.CANCELLED)
            return StateUpdate(state=state, message=request.message, exit_code=code)
        if code == 0:
            return StateUpdate(state=StateName.SUCCESS, message="process exited with code 0", exit_code=0)
        if code < 0:
            message = f"process killed by signal {_signal_name(-code)}"
            return StateUpdate(state=StateName.FAILED, message=message, exit_code=code)
        return StateUpdate(state=StateName.FAILED, message=f"process exited with code {code}", exit_code=code)


_STOPPED_AS = {"timeout": StateName.FAILED, "api_lost": StateName.CRASHED}
"""The final state of a run the agent stopped, by why it stopped it (else Cancelled)."""


def _signal_name(number: int) -> str:
    try:
        return f"{signal.Signals(number).name} ({number})"
    except ValueError:
        return str(number)
