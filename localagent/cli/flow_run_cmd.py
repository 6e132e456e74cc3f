"""``localagent flow-run``: list, show, read the output of and cancel flow runs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from localagent.cli.common import (
    DEFAULT_API_URL,
    ApiKeyOption,
    ApiUrlOption,
    JsonOption,
    api_client,
    echo_err,
    format_labels,
    format_time,
    parse_state,
    print_fields,
    print_json,
    print_table,
    shorten,
)

if TYPE_CHECKING:
    from localagent.api.client import ApiClient
    from localagent.api.models import FlowRun, LogLine, StateRecord, Waiting

app = typer.Typer(no_args_is_help=True, help="List, inspect, read the output of and cancel flow runs.")

LONG_POLL = 2.0  # seconds one read_logs may wait for new lines while following
RETRY_GRACE = 120.0  # after retry_delay, how long a Failed run with retries left may take to be rescheduled
_STATE_CHECK_EVERY = 2.0
WAITING_REPORT_AFTER = 3.0  # seconds of watching before why a Scheduled run waits is printed (most are taken at once)

RunIdArgument = Annotated[
    str,
    typer.Argument(
        metavar="RUN",
        help="The flow run: its id, a unique prefix of the id (as `flow-run ls` prints it), or its name.",
        show_default=False,
    ),
]


def follow_run(
    client: ApiClient,
    run_id: str,
    print_line: Callable[[LogLine], None],
    print_state: Callable[[FlowRun, Sequence[StateRecord]], None] | None = None,
    print_waiting: Callable[[Waiting], None] | None = None,
) -> FlowRun:
    """Print a run's output as it arrives until it is final for good (retries of the same run followed).

    Returns the run in its final state. ``print_state`` gets the run and its new history entries each time
    its state history grows; ``print_waiting`` gets why the run waits once it has been Scheduled for
    ``WAITING_REPORT_AFTER`` seconds of the watch, and again each time the reason changes.
    """
    from localagent.api.models import StateName

    after, history_seen, last_check = -1, 0, 0.0
    report_waiting_from = time.monotonic() + WAITING_REPORT_AFTER
    waiting_shown: Waiting | None = None
    retries: int | None = None
    retry_delay = 0.0
    while True:
        page = client.read_logs(run_id, after=after, wait=LONG_POLL)
        for line in page.lines:
            print_line(line)
        after = page.next_after
        if page.lines and not page.finished and time.monotonic() - last_check < _STATE_CHECK_EVERY:
            continue
        run, last_check = client.get_run(run_id), time.monotonic()
        if print_state is not None and len(run.history) != history_seen:
            print_state(run, run.history[history_seen:] if len(run.history) > history_seen else run.history[-1:])
            history_seen = len(run.history)
        if print_waiting is not None:
            waiting = run.waiting if run.state is StateName.SCHEDULED else None
            if waiting is not None and waiting != waiting_shown and time.monotonic() >= report_waiting_from:
                print_waiting(waiting)
                waiting_shown = waiting
            elif waiting is None:
                waiting_shown = None  # a later wait (a retry) is printed again
        if not page.finished or not run.state.is_final:
            continue
        if run.state not in (StateName.FAILED, StateName.CRASHED):
            return run
        if retries is None:
            flow = client.get_flow(run.flow, version=run.flow_version)
            retries, retry_delay = flow.retries, flow.retry_delay
        if run.attempt > retries:
            return run
        # A retry of this same run id is due after retry_delay; wait for it, but not forever.
        ended = run.ended or run.updated
        if time.time() - ended.timestamp() > retry_delay + RETRY_GRACE:
            echo_err(f"run {run.name}: a retry was due {retry_delay:g}s after it ended but none came; giving up")
            return run
        time.sleep(LONG_POLL)


def print_line_plain(line: LogLine, *, timestamps: bool = False, all_to_stderr: bool = False) -> None:
    """A log line as the run wrote it: stdout lines to stdout, stderr and system lines to stderr."""
    text = f"{format_time(line.time)} {line.stream:<6} {line.text}" if timestamps else line.text
    typer.echo(text, err=all_to_stderr or line.stream != "stdout")


def print_state_changes(run: FlowRun, records: Sequence[StateRecord]) -> None:
    """New history entries on stderr, one a line: ``14:03:07 Running (attempt 1, pid 42, agent h1)``.

    Only the newest entry carries the run's details (attempt, pid, agent, exit code), which describe it.
    """
    for index, record in enumerate(records):
        details = []
        if index == len(records) - 1:
            details.append(f"attempt {run.attempt}")
            if run.pid is not None:
                details.append(f"pid {run.pid}")
            if run.agent_name:
                details.append(f"agent {run.agent_name}")
            if run.exit_code is not None:
                details.append(f"exit code {run.exit_code}")
        line = f"{format_time(record.time)[-8:]} {record.state.value}"
        if details:
            line += f" ({', '.join(details)})"
        echo_err(line + (f": {record.message}" if record.message else ""))


def print_waiting_reason(waiting: Waiting) -> None:
    """Why a watched run waits, on stderr: ``14:03:10 waiting: no agent is online: ... (no_agent)``."""
    from datetime import datetime

    echo_err(f"{datetime.now().strftime('%H:%M:%S')} waiting: {waiting.message} ({waiting.reason})")


@app.command("ls")
def list_runs(
    flow: Annotated[str | None, typer.Option("--flow", help="Only runs of this flow.")] = None,
    state: Annotated[str | None, typer.Option("--state", help="Only runs in this state (e.g. Running).")] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Only runs owned by this agent id.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="At most this many runs.")] = 50,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip this many (paging).")] = 0,
    as_json: JsonOption = False,
    api: ApiUrlOption = DEFAULT_API_URL,
    key: ApiKeyOption = None,
) -> None:
    """List flow runs, newest first; WAITING says why a Scheduled run is not taken yet (`flow-run show` explains).

    Example: `localagent flow-run ls --flow nightly-report --state failed --limit 10`
    """
    wanted_state = parse_state(state)
    with api_client(api, key) as client:
        runs = client.list_runs(flow=flow, state=wanted_state, agent=agent, limit=limit, offset=offset)
    if as_json:
        print_json(runs)
        return
    print_table(
        ["ID", "NAME", "FLOW", "LABELS", "STATE", "ATTEMPT", "AGENT", "SCHEDULED", "SCHEDULE", "EXIT", "WAITING"],
        (
            [
                run.id,
                run.name,
                f"{run.flow}:{run.flow_version}",
                format_labels(run.labels),
                run.state.value,
                str(run.attempt),
                run.agent_name or "-",
                format_time(run.scheduled_start),
                run.schedule or "-",
                "-" if run.exit_code is None else str(run.exit_code),
                run.waiting.reason if run.waiting else "-",
            ]
            for run in runs
        ),
    )


@app.command("show")
def show_run(
    run_id: RunIdArgument,
    as_json: JsonOption = False,
    api: ApiUrlOption = DEFAULT_API_URL,
    key: ApiKeyOption = None,
) -> None:
    """Show one flow run: its state history with times and messages, exit code, pid, agent and attempt.

    Example: `localagent flow-run show proud-dolphin-18`

    Example: `localagent flow-run show 506f15aa`
    """
    with api_client(api, key) as client:
        run = client.get_run(run_id)
    if as_json:
        print_json(run)
        return
    state = run.state.value + (f": {run.state_message}" if run.state_message else "")
    agent = f"{run.agent_name} ({run.agent_id})" if run.agent_id else "-"
    print_fields(
        [
            ("id", run.id),
            ("name", run.name),
            ("flow", f"{run.flow} (version {run.flow_version})"),
            ("state", state),
            *([("waiting", f"{run.waiting.message} ({run.waiting.reason})")] if run.waiting else []),
            ("attempt", str(run.attempt)),
            ("parameters", json.dumps(run.parameters, ensure_ascii=False)),
            ("labels", format_labels(run.labels)),
            ("run config", run.run_config_type),
            ("scheduled", format_time(run.scheduled_start)),
            ("schedule", f"{run.schedule}, fire time {format_time(run.nominal_time)}" if run.schedule else "-"),
            ("started", format_time(run.started)),
            ("ended", format_time(run.ended)),
            ("agent", agent),
            ("pid", "-" if run.pid is None else str(run.pid)),
            ("exit code", "-" if run.exit_code is None else str(run.exit_code)),
        ]
    )
    typer.echo("")
    print_table(
        ["TIME", "STATE", "MESSAGE"],
        ([format_time(record.time), record.state.value, shorten(record.message, 200)] for record in run.history),
    )


@app.command("logs")
def show_logs(
    run_id: RunIdArgument,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new output until the run is final.")
    ] = False,
    timestamps: Annotated[
        bool, typer.Option("--timestamps", "-t", help="Prefix each line with time and stream.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per line (seq, time, stream, text).")
    ] = False,
    api: ApiUrlOption = DEFAULT_API_URL,
    key: ApiKeyOption = None,
) -> None:
    """Print a flow run's output; stdout lines go to stdout, stderr and system lines to stderr.

    Example: `localagent flow-run logs 506f15aa --follow`
    """

    def emit(line: LogLine) -> None:
        if as_json:
            typer.echo(line.model_dump_json())
        else:
            print_line_plain(line, timestamps=timestamps)

    with api_client(api, key) as client:
        run_id = client.get_run(run_id).id  # a prefix or a name is resolved once: it could match more later
        if follow:
            follow_run(client, run_id, emit)
            return
        after = -1
        while True:
            page = client.read_logs(run_id, after=after, limit=1000)
            for line in page.lines:
                emit(line)
            if not page.lines:
                break
            after = page.next_after


@app.command("cancel")
def cancel_run(
    run_id: RunIdArgument,
    as_json: JsonOption = False,
    api: ApiUrlOption = DEFAULT_API_URL,
    key: ApiKeyOption = None,
) -> None:
    """Cancel a flow run: at once if it has not started, else its agent stops it (Cancelling, then Cancelled).

    Example: `localagent flow-run cancel proud-dolphin-18`
    """
    with api_client(api, key) as client:
        run = client.cancel_run(run_id)
    if as_json:
        print_json(run)
    elif run.state.is_final:
        typer.echo(f"run {run.name} ({run.id}) is {run.state.value}")
    else:
        typer.echo(f"run {run.name} ({run.id}) is {run.state.value}; its agent is stopping it")
