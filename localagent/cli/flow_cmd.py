"""``localagent flow``: register flows (one by one or from ``flows.toml``), list them and start runs."""

from __future__ import annotations

import json
import shlex
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from localagent.cli import schedule_cmd
from localagent.cli.bulk_runs import COUNT_MAX, create_in_bulk, read_params_file
from localagent.cli.common import (
    DEFAULT_API_URL,
    ApiKeyOption,
    ApiUrlOption,
    JsonOption,
    api_client,
    echo_err,
    format_labels,
    format_time,
    parse_at,
    parse_duration_option,
    parse_pairs,
    parse_params,
    print_fields,
    print_json,
    print_table,
    shorten,
    usage_error,
)

if TYPE_CHECKING:
    from localagent.api.client import ApiClient
    from localagent.api.models import Flow, FlowRunCreate, FlowSpec

_SPEC_FLAGS = {
    "name": "NAME",
    "command": "--command",
    "run_config": "--env/--working-dir/--run-config",
    "parameters": "--param",
    "labels": "--label",
    "retries": "--retries",
    "retry_lost": "--retry-lost",
    "retry_delay": "--retry-delay",
    "timeout": "--timeout",
    "schedules": "--cron/--interval",
}
_RUN_FLAGS = {"flow": "NAME", "parameters": "--param", "labels": "--label", "scheduled_start": "--at"}


class RunConfigType(str, Enum):
    """The run config types a local agent runs."""

    LOCAL = "local"
    UNIVERSAL = "universal"


app = typer.Typer(no_args_is_help=True, help="Register, list and run flows.")
app.add_typer(schedule_cmd.app, name="schedule")


def describe_command(command: list[str] | str) -> str:
    """An argv list as a shell would read it; a string (run by /bin/sh -c) as written."""
    return command if isinstance(command, str) else shlex.join(command)


def register_spec(client: ApiClient, spec: FlowSpec) -> tuple[str, Flow, int | None]:
    """Register ``spec``; returns ``created``/``updated``/``unchanged``, the flow and the version before."""
    from localagent.errors import ApiNotFound

    try:
        before: int | None = client.get_flow(spec.name).version
    except ApiNotFound:
        before = None
    flow = client.register_flow(spec)
    outcome = "created" if before is None else "unchanged" if flow.version == before else "updated"
    return outcome, flow, before


def schedule_usage_error(exc: Any) -> typer.BadParameter:
    """A usage error naming the schedule flag at fault (``--timezone``) rather than ``schedules.0.timezone``."""
    errors = exc.errors()
    if errors and all(error["loc"][:1] == ("schedules",) for error in errors):
        parts = []
        for error in errors:
            field = next((str(p) for p in error["loc"][2:] if isinstance(p, str)), "")
            flag = schedule_cmd.SCHEDULE_FLAGS.get(field, "--cron/--interval")
            from localagent.api.flowfile import describe_error

            parts.append((flag, describe_error(error)))
        flags = list(dict.fromkeys(flag for flag, _ in parts))
        return typer.BadParameter("; ".join(dict.fromkeys(text for _, text in parts)), param_hint="/".join(flags))
    return usage_error(exc, _SPEC_FLAGS)


def _outcome_line(outcome: str, flow: Flow, before: int | None) -> str:
    if outcome == "updated":
        return f"updated flow {flow.name!r}: version {before} -> {flow.version}"
    return f"{outcome} flow {flow.name!r} (version {flow.version})"


@app.command("register")
def register(
    name: Annotated[str, typer.Argument(help="Flow name: letters, digits, '.', '_' and '-'.")],
    command: Annotated[
        list[str],
        typer.Option(
            "--command",
            "-c",
            metavar="CMD",
            help="Given once: a command line run by /bin/sh -c. Given several times: the argv list.",
        ),
    ],
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", metavar="LABEL", help="Label runs need (repeatable).")
    ] = None,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", metavar="K=V", help="Run environment.")] = None,
    working_dir: Annotated[
        str | None, typer.Option("--working-dir", metavar="DIR", help="Working dir on the agent's host (local).")
    ] = None,
    run_config: Annotated[
        RunConfigType | None,
        typer.Option("--run-config", help="Run config type; default local with --working-dir, else universal."),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", metavar="K=V", help="Default parameter; V parsed as JSON.")
    ] = None,
    retries: Annotated[int, typer.Option("--retries", min=0, max=1000, help="Retries after Failed/Crashed.")] = 0,
    retry_lost: Annotated[
        bool,
        typer.Option(
            "--retry-lost/--no-retry-lost",
            help="Let a run whose agent went silent be retried elsewhere (within --retries) once an agent with "
            'runs.on_api_lost = "stop" has stopped it; off: it waits for its agent (never runs twice).',
        ),
    ] = False,
    retry_delay: Annotated[
        str | None, typer.Option("--retry-delay", metavar="DURATION", help="Wait before a retry, e.g. 1m.")
    ] = None,
    timeout: Annotated[
        str | None, typer.Option("--timeout", metavar="DURATION", help="Stop and fail a run after this, e.g. 30m.")
    ] = None,
    cron: Annotated[
        list[str] | None,
        typer.Option(
            "--cron",
            metavar="EXPR",
            help="Run on this cron schedule, e.g. '*/15 * * * *' (repeatable).",
            rich_help_panel="Schedule",
        ),
    ] = None,
    interval: Annotated[
        list[str] | None,
        typer.Option(
            "--interval",
            metavar="DURATION",
            help="Run every DURATION of real time, e.g. 15m (repeatable).",
            rich_help_panel="Schedule",
        ),
    ] = None,
    timezone: Annotated[
        str | None,
        typer.Option(
            "--timezone",
            "--tz",
            metavar="ZONE",
            help="IANA zone the cron is read in (default UTC).",
            rich_help_panel="Schedule",
        ),
    ] = None,
    anchor: Annotated[
        str | None,
        typer.Option(
            "--anchor",
            metavar="TIME",
            help="An instant an --interval fires at (ISO 8601 with offset).",
            rich_help_panel="Schedule",
        ),
    ] = None,
    overlap: Annotated[
        schedule_cmd.OverlapChoice | None,
        typer.Option(
            "--overlap", help="While a run of the schedule is unfinished (default allow).", rich_help_panel="Schedule"
        ),
    ] = None,
    catchup: Annotated[
        schedule_cmd.CatchupChoice | None,
        typer.Option(
            "--catchup", help="Times missed while no server ran (default latest).", rich_help_panel="Schedule"
        ),
    ] = None,
    deadline: Annotated[
        str | None,
        typer.Option(
            "--deadline", metavar="DURATION", help="A time later than this gets no run.", rich_help_panel="Schedule"
        ),
    ] = None,
    jitter: Annotated[
        str | None,
        typer.Option(
            "--jitter", metavar="DURATION", help="Start each run up to this much later.", rich_help_panel="Schedule"
        ),
    ] = None,
    as_json: JsonOption = False,
    api: ApiUrlOption = DEFAULT_API_URL,
    key: ApiKeyOption = None,
) -> None:
    """Register a flow (a new version only when something changed).

    The working dir and the command are checked by the agent's host before a run starts, not here.

    Example: `localagent flow register report -c 'python report.py' --working-dir /srv/app --param day=today`

    Example: `localagent flow register backup -c rsync -c -a -c /data -c /backup --label nas --retries 2 --timeout 1h`

    Example: `localagent flow register report -c 'python report.py' --cron '30 2 * * *' --timezone Europe/Berlin`

    Example: `localagent flow register poll -c ./poll.sh --interval 15m --overlap skip`
    """
    from pydantic import ValidationError

    from localagent.api.models import FlowSpec, RunConfig

    if working_dir is not None and run_config is RunConfigType.UNIVERSAL:
        raise typer.BadParameter("only a 'local' run config has a working dir", param_hint="--working-dir")
    try:
        spec = FlowSpec(
            name=name,
            command=command[0] if len(command) == 1 else list(command),
            run_config=RunConfig(
                type=run_config.value if run_config else "local" if working_dir is not None else "universal",
                env=parse_pairs(env or [], "--env"),
                working_dir=working_dir,
            ),
            parameters=parse_params(param or []),
            labels=list(label or []),
            retries=retries,
            retry_lost=retry_lost,
            retry_delay=parse_duration_option(retry_delay, "--retry-delay") or 0.0,
            timeout=parse_duration_option(timeout, "--timeout"),
            schedules=schedule_cmd.schedule_specs(
                cron or [],
                interval or [],
                {
                    "timezone": timezone,
                    "anchor": anchor,
                    "overlap": overlap.value if overlap else None,
                    "catchup": catchup.value if catchup else None,
                    "deadline": deadline,
                    "jitter": jitter,
                },
            ),
        )
    except ValidationError as exc:
        raise schedule_usage_error(exc) from None
    with api_client(api, key) as client:
        outcome, flow, before = register_spec(client, spec)
    if as_json:
        print_json(flow)
    else:
        typer.echo(_outcome_line(outcome, flow, before))


@app.command("apply")
def apply(
    files: Annotated[
        list[Path],
        typer.Option("--file", "-f", metavar="FLOWS.TOML", help="A flows file (repeatable).", dir_okay=False),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of {name, version, outcome}.")] = False,
    api: ApiUrlOption = DEFAULT_API_URL,
    key: ApiKeyOption = None,
) -> None:
    """Register every flow table of a flows.toml; each is reported created, updated or unchanged.

    The whole file is validated first (errors name file, line and key); nothing is registered if it is wrong.

    Example: `localagent flow apply -f flows.toml`
    """
    from localagent.api.flowfile import load_flows_file
    from localagent.errors import ConfigError

    specs: list[FlowSpec] = []
    problems = []
    for path in files:
        try:
            specs.extend(load_flows_file(path))
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    results = []
    with api_client(api, key) as client:
        for spec in specs:
            outcome, flow, before = register_spec(client, spec)
            results.append({"name": flow.name, "version": flow.version, "outcome": outcome})
            if not as_json:
                typer.echo(_outcome_line(outcome, flow, before))
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    elif not specs:
        echo_err("no flow tables found; nothing to register")


@app.command("ls")
def list_flows(
    as_json: JsonOption = False,
    api: ApiUrlOption = DEFAULT_API_URL,
    key: ApiKeyOption = None,
) -> None:
    """List registered flows (latest version of each).

    Example: `localagent flow ls --json`
    """
    with api_client(api, key) as client:
        flows = client.list_flows()
    if as_json:
        print_json(flows)
        return
    print_table(
        ["NAME", "VERSION", "COMMAND", "RUN CONFIG", "LABELS", "RETRIES", "TIMEOUT", "CREATED"],
        (
            [
                flow.name,
                str(flow.version),
                shorten(describe_command(flow.command), 40),
                flow.run_config.type,
                format_labels(flow.labels),
                str(flow.retries),
                "-" if flow.timeout is None else f"{flow.timeout:g}s",
                format_time(flow.created),
            ]
            for flow in flows
        ),
    )


@app.command("show")
def show_flow(
    name: Annotated[str, typer.Argument(help="Flow name.")],
    version: Annotated[int | None, typer.Option("--version", min=1, help="This version, not the latest.")] = None,
    as_json: JsonOption = False,
    api: ApiUrlOption = DEFAULT_API_URL,
    key: ApiKeyOption = None,
) -> None:
    """Show one flow.

    Example: `localagent flow show nightly-report --version 2`
    """
    with api_client(api, key) as client:
        flow = client.get_flow(name, version)
    if as_json:
        print_json(flow)
        return
    config = flow.run_config
    print_fields(
        [
            ("name", flow.name),
            ("version", str(flow.version)),
            (
                "command",
                describe_command(flow.command) + (" (run by /bin/sh -c)" if isinstance(flow.command, str) else ""),
            ),
            ("run config", config.type + (f", working dir {config.working_dir}" if config.working_dir else "")),
            ("env", " ".join(f"{k}={v}" for k, v in config.env.items()) or "-"),
            ("parameters", json.dumps(flow.parameters, ensure_ascii=False)),
            ("labels", format_labels([*flow.labels, *config.labels])),
            ("retries", f"{flow.retries} (delay {flow.retry_delay:g}s)"),
            (
                "retry lost",
                "yes (a run of a silent agent that stopped it may run elsewhere)" if flow.retry_lost else "no",
            ),
            ("timeout", "-" if flow.timeout is None else f"{flow.timeout:g}s"),
            ("schedules", schedule_cmd.describe_specs(flow.schedules)),
            ("created", format_time(flow.created)),
        ]
    )


@app.command("run")
def run_flow(
    name: Annotated[str, typer.Argument(help="Flow name.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", metavar="K=V", help="Parameter; V parsed as JSON.")
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", metavar="LABEL", help="Extra label (repeatable).")
    ] = None,
    at: Annotated[
        str | None, typer.Option("--at", metavar="TIME", help="Start time: ISO 8601 or relative like +5m.")
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Follow output and state; exit 0 on Success, else 1.")
    ] = False,
    count: Annotated[
        int,
        typer.Option("--count", "-c", min=1, max=COUNT_MAX, help="Start this many runs alike; print their ids."),
    ] = 1,
    params_file: Annotated[
        Path | None,
        typer.Option(
            "--params-file",
            metavar="FILE",
            help="One run per line: a JSON object of parameters (over --param). Print the runs' ids.",
        ),
    ] = None,
    as_json: JsonOption = False,
    api: ApiUrlOption = DEFAULT_API_URL,
    key: ApiKeyOption = None,
) -> None:
    """Start a run of a flow and print its id (or the run as JSON).

    With --count N or --params-file: start many runs, sent 10,000 to a request (each request one
    transaction: a bad run refuses its whole request, naming its line), and print one id a line (--json:
    a list of id, name, flow, flow_version).

    With --watch: print its output as it arrives (states on stderr), follow retries; exit 0 on Success, else 1.
    A run still waiting for an agent after a few seconds gets a line on stderr saying why (no agent online, no
    agent with its labels, every agent busy, ...), and another each time the reason changes.

    Example: `localagent flow run nightly-report --param day=2024-05-01 --at +5m`

    Example: `localagent flow run hello --watch`

    Example: `localagent flow run resize --params-file images.jsonl`
    """
    from pydantic import ValidationError

    from localagent.api.models import FlowRunCreate, StateName
    from localagent.cli.flow_run_cmd import follow_run, print_line_plain, print_state_changes, print_waiting_reason

    many = count > 1 or params_file is not None
    if count > 1 and params_file is not None:
        raise typer.BadParameter("give --count or --params-file, not both", param_hint="--count")
    if many and watch:
        raise typer.BadParameter("--watch follows one run; leave it out with --count or --params-file")
    try:
        request = FlowRunCreate(
            flow=name,
            parameters=parse_params(param or []),
            labels=list(label or []),
            scheduled_start=parse_at(at) if at is not None else None,
        )
    except ValidationError as exc:
        raise usage_error(exc, _RUN_FLAGS) from None
    if many:
        _run_many(request, count, params_file, as_json, api, key)
        return
    with api_client(api, key) as client:
        run = client.create_run(request)
        if not watch:
            if as_json:
                print_json(run)
            else:
                typer.echo(run.id)
            return
        echo_err(f"run {run.name} ({run.id}) of flow {run.flow} version {run.flow_version}")
        final = follow_run(
            client,
            run.id,
            lambda line: print_line_plain(line, all_to_stderr=as_json),
            print_state_changes,
            print_waiting_reason,
        )
    if as_json:
        print_json(final)
    raise typer.Exit(0 if final.state is StateName.SUCCESS else 1)


def _run_many(
    request: FlowRunCreate, count: int, params_file: Path | None, as_json: bool, api: str, key: str | None
) -> None:
    from pydantic import ValidationError

    from localagent.api.models import FlowRunCreate

    lines: list[int] | None = None
    if params_file is None:
        requests = [request] * count
    else:
        rows = read_params_file(params_file)
        lines = [number for number, _ in rows]
        requests = []
        for number, parameters in rows:
            try:
                # Validated like --param values, so a bad line is named here, before anything is sent.
                requests.append(
                    FlowRunCreate.model_validate(
                        {**request.model_dump(), "parameters": {**request.parameters, **parameters}}
                    )
                )
            except ValidationError as exc:
                problem = "; ".join(str(error["msg"]) for error in exc.errors())
                raise typer.BadParameter(
                    f"{params_file} line {number}: {problem}", param_hint="--params-file"
                ) from None
    with api_client(api, key) as client:
        created = create_in_bulk(client, requests, lines=lines, source=str(params_file or ""))
    if as_json:
        print_json(created)
    else:
        typer.echo("\n".join(run.id for run in created))


@app.command("schema")
def schema() -> None:
    """Print the JSON schema of flows.toml (the one in schemas/flows.schema.json).

    Example: `localagent flow schema > schemas/flows.schema.json`
    """
    from localagent.api.flowfile import flows_json_schema

    typer.echo(json.dumps(flows_json_schema(), indent=2))
