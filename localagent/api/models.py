"""Wire models shared by the API client, the server and the CLI.

Every request and response body of the orchestration API is one of these. The endpoints
(all JSON, all under ``/api``; ``Authorization: Bearer <api key or run token>``)::

    GET    /api/health                              -> Health                 (no key needed)
    POST   /api/flows                 FlowSpec      -> Flow                   (new version only on change)
    GET    /api/flows                               -> list[Flow]             (latest version of each)
    GET    /api/flows/{name}?version=N              -> Flow
    GET    /api/flows/{name}/schedules              -> list[Schedule]         (with the next five fire times)
    POST   /api/flows/{name}/schedules/{s}/pause    -> Schedule               (and /resume)
    GET    /api/schedules                           -> list[Schedule]         (every flow's)
    POST   /api/flow_runs             FlowRunCreate -> FlowRun                (201)
    GET    /api/flow_runs?flow=&state=&agent=&limit=&offset= -> list[FlowRun] (newest first)
    GET    /api/flow_runs/{ref}                     -> FlowRun                (with history; ref: id, id prefix or name)
    POST   /api/flow_runs/{ref}/cancel              -> FlowRun
    POST   /api/flow_runs/{id}/state  StateUpdate   -> FlowRun                (409 on an illegal transition)
    POST   /api/flow_runs/states      StateReports  -> StateReportResults     (many runs at once; API key only)
    POST   /api/flow_runs/{id}/logs   LogBatch      -> LogBatchResult         (a resent seq is stored once)
    GET    /api/flow_runs/{ref}/logs?after=-1&limit=1000&wait=0 -> LogPage   (wait > 0 long-polls)
    POST   /api/agents                AgentRegister -> Agent                  (reuses a stopped or lost record)
    GET    /api/agents?all=false                    -> list[Agent]            (all: every record, not the latest)
    POST   /api/agents/{id}/heartbeat Heartbeat     -> HeartbeatReply
    POST   /api/agents/{id}/disconnect              -> Agent                  (the agent stops cleanly)
    POST   /api/agents/{id}/claim     ClaimRequest  -> ClaimReply             (long-polls up to ``wait``)

States::

    Scheduled -> Submitted -> Running -> Success | Failed | Cancelled | Crashed
    Scheduled -> Cancelled                      (cancel before a claim)
    Submitted -> Failed | Cancelled | Crashed   (could not start, cancelled before start, agent lost)
    Submitted | Running -> Cancelling -> Cancelled | Success | Failed | Crashed
    Submitted | Running | Cancelling -> Unknown (server-side only: the agent went silent for agent_timeout)
    Unknown -> Running | Cancelling             (its agent heartbeats again and still runs it: reconnected)
    Unknown -> Success | Failed | Cancelled | Crashed   (a late report of its agent; or, server-side, the
                                                 lost timeout, or a retry_lost flow's stop window)
    Failed | Crashed -> Scheduled               (server-side only: a retry, attempt + 1)

``Unknown`` is not final: the run may still be running on an agent the server cannot hear (a partition).
It is never retried while its agent may still run it (see ``FlowSpec.retry_lost`` and docs/operations.md).
A state report carrying an ``attempt`` older than the run's current one (the original agent of a replaced
attempt reporting late) is answered 200 and recorded in the run's history without changing the current
attempt, except a late Success while the replacement is still Scheduled: the run then takes that Success.

Text fields refuse lone UTF-16 surrogates and NUL (422 naming the field); state messages and config
errors get U+FFFD instead (``localagent.api.text``). Times are timezone-aware UTC. Durations on the wire
are seconds (numbers); ``FlowSpec`` also accepts the config spellings (``"30s"``, ``"1h30m"``).

Fields added to replies after the first release (``FlowRun.waiting``, ``Agent.stopped``,
``Agent.max_concurrent_runs``) are left out of the JSON while they are null, so that clients built before
them, which refuse unknown fields, keep reading the replies that do not use them.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from localagent.api.schedule_models import MAX_SCHEDULES, ScheduleSpec
from localagent.api.text import EnvName, Parameters, Relayed, Text, text_problem
from localagent.config.units import parse_duration


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _is_false(value: object) -> bool:
    return value is False


class StateName(str, Enum):
    """A flow run's state."""

    SCHEDULED = "Scheduled"
    SUBMITTED = "Submitted"
    RUNNING = "Running"
    CANCELLING = "Cancelling"
    SUCCESS = "Success"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    CRASHED = "Crashed"
    UNKNOWN = "Unknown"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({StateName.SUCCESS, StateName.FAILED, StateName.CANCELLED, StateName.CRASHED})


class Health(_Wire):
    status: Literal["ok"] = "ok"
    version: str
    database: str = Field(description="storage backend in use, e.g. 'sqlite' or 'postgresql'")


class RunConfig(_Wire):
    """How a flow's process is set up. A local agent takes ``universal`` and ``local`` only."""

    type: Text = Field(default="universal", min_length=1, max_length=64)
    env: dict[EnvName, Text] = Field(default_factory=dict)
    working_dir: Text | None = Field(default=None, description="only honoured for type 'local'")
    labels: list[Text] = Field(default_factory=list)


class FlowSpec(_Wire):
    """A flow as registered: ``POST /api/flows`` and one ``[[flow]]`` of ``flows.toml``."""

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    command: list[str] | str = Field(description="argv list; a plain string runs under /bin/sh -c")
    run_config: RunConfig = Field(default_factory=RunConfig)
    parameters: Parameters = Field(default_factory=dict, description="at most 64 KiB as JSON")
    labels: list[Text] = Field(default_factory=list)
    retries: int = Field(default=0, ge=0, le=1000)
    retry_lost: bool = Field(
        default=False,
        exclude_if=_is_false,  # left out while off: flows registered before it keep their spec (and version)
        description="a run whose agent went silent may be retried elsewhere (within retries), once the agent's "
        "own on_api_lost = 'stop' has stopped it; off: such a run waits for its agent (never runs twice)",
    )
    retry_delay: float = Field(default=0.0, ge=0, description="seconds; accepts '1m' too")
    timeout: float | None = Field(default=None, gt=0, description="seconds; accepts '30m' too; none = no limit")
    schedules: list[ScheduleSpec] = Field(
        default_factory=list, max_length=MAX_SCHEDULES, description="cron or interval schedules that start runs"
    )

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, command: list[str] | str) -> list[str] | str:
        if isinstance(command, str) and not command.strip():
            raise ValueError("command must not be empty")
        if isinstance(command, list) and (not command or not command[0]):
            raise ValueError("command must name a program")
        for index, argument in enumerate([command] if isinstance(command, str) else command):
            problem = text_problem(argument)
            if problem is not None:
                raise ValueError(f"argument {index} {problem}" if isinstance(command, list) else problem)
        return command

    @field_validator("retry_delay", "timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @field_validator("schedules")
    @classmethod
    def _named_schedules(cls, schedules: list[ScheduleSpec]) -> list[ScheduleSpec]:
        """Unnamed schedules are named by their position; every name is unique within the flow."""
        named = [s if s.name else s.model_copy(update={"name": str(i + 1)}) for i, s in enumerate(schedules)]
        seen: set[str] = set()
        for schedule in named:
            if schedule.name in seen:
                raise ValueError(f"two schedules are named {schedule.name!r}; give each a unique 'name'")
            seen.add(str(schedule.name))
        return named


class Flow(FlowSpec):
    """A registered flow version."""

    version: int = Field(ge=1)
    created: datetime


class StateRecord(_Wire):
    """One entry of a run's state history."""

    state: StateName
    time: datetime
    message: str = ""


class FlowRunCreate(_Wire):
    """``POST /api/flow_runs``: a new run of a flow (its latest version unless ``version`` is given)."""

    flow: Text = Field(min_length=1)
    version: int | None = Field(default=None, ge=1)
    parameters: Parameters = Field(
        default_factory=dict, description="merged over the flow's defaults; at most 64 KiB as JSON, merged too"
    )
    labels: list[Text] = Field(default_factory=list, description="added to the flow's labels")
    scheduled_start: datetime | None = Field(default=None, description="default: now")
    name: Text | None = Field(default=None, max_length=200, description="default: a generated name")


BULK_CREATE_MAX = 10_000
"""Runs one ``POST /api/flow_runs/bulk`` may create."""


class FlowRunBulkCreate(_Wire):
    """``POST /api/flow_runs/bulk``: many runs in one transaction; any bad item refuses them all."""

    runs: list[FlowRunCreate] = Field(
        min_length=1, max_length=BULK_CREATE_MAX, description="each as in POST /api/flow_runs"
    )


class CreatedRun(_Wire):
    id: str
    name: str
    flow: str
    flow_version: int


class FlowRunsCreated(_Wire):
    """The runs a bulk creation made, in the order of the request (all Scheduled)."""

    runs: list[CreatedRun]


def _is_none(value: object) -> bool:
    return value is None


WAITING_REASONS = {
    "not_due": "its scheduled start is in the future",
    "retry_delay": "a retry waits out the flow's retry_delay",
    "no_agent": "no agent is online",
    "unsupported_run_config": "no online agent takes the run's run-config type",
    "unlabeled_run": "the run has no labels and no online agent takes unlabeled runs",
    "no_matching_agent": "no online agent has every label of the run",
    "agents_busy": "every agent that takes the run runs as many runs as its max_concurrent_runs allows",
    "claimable": "an online agent takes the run and has a free slot: it should claim it with its next poll",
}
"""The codes of ``Waiting.reason`` and what each means."""


class Waiting(_Wire):
    """Why a Scheduled run has not been taken by an agent yet; computed when the run is read, never stored.

    A client should show ``message`` for a ``reason`` it does not know (codes may be added).
    """

    reason: str = Field(description="a short code: " + "; ".join(f"{k}: {v}" for k, v in WAITING_REASONS.items()))
    message: str = Field(description="one readable sentence naming the labels, agents and times involved")


class FlowRun(_Wire):
    """One execution of a flow."""

    id: str
    name: str
    flow: str
    flow_version: int
    parameters: dict[str, Any]
    labels: list[str]
    run_config_type: str
    scheduled_start: datetime
    state: StateName
    state_message: str = ""
    history: list[StateRecord] = Field(default_factory=list)
    attempt: int = Field(default=1, ge=1, description="1 for the first try, +1 per retry")
    agent_id: str | None = None
    agent_name: str | None = None
    pid: int | None = None
    exit_code: int | None = None
    created: datetime
    updated: datetime
    started: datetime | None = None
    ended: datetime | None = None
    schedule: str | None = Field(default=None, description="id of the schedule that made this run ('flow/name')")
    nominal_time: datetime | None = Field(default=None, description="the schedule's fire time this run is for")
    waiting: Waiting | None = Field(
        default=None,
        exclude_if=_is_none,
        description="only on a Scheduled run read by id or listed: why no agent has taken it yet",
    )


class StateUpdate(_Wire):
    """``POST /api/flow_runs/{id}/state``: the owning agent (or the run's token) moves a run on."""

    state: StateName
    message: Relayed = Field(default="", max_length=10_000, description="lone UTF-16 surrogates become U+FFFD")
    pid: int | None = None
    exit_code: int | None = None
    attempt: int | None = Field(
        default=None,
        ge=1,
        exclude_if=_is_none,
        description="the attempt the report is about (the claimed run's attempt); a report for an attempt "
        "that has since been replaced is recorded in the run's history, not applied",
    )


class StateReport(StateUpdate):
    """One entry of ``POST /api/flow_runs/states``: a state update of the run ``run_id``."""

    run_id: Text = Field(min_length=1, max_length=200)


class StateReports(_Wire):
    """``POST /api/flow_runs/states``: state updates of many runs, applied in order in one transaction.

    An agent sends the reports of all its runs that are due together, so the API does one request and one
    commit for them instead of one each. Each report is applied exactly as ``POST /api/flow_runs/{id}/state``
    would apply it; one that is refused (unknown run, illegal move) does not stop the others.
    """

    reports: list[StateReport] = Field(min_length=1, max_length=1000)


class StateReportResult(_Wire):
    """What became of one report: ``status`` is the HTTP status the single-run endpoint would have answered."""

    run_id: str
    status: int = Field(description="200 stored (or a repeat of the current state); 404 unknown run; 409 refused")
    state: StateName | None = Field(default=None, description="the run's state after the report (None on 404)")
    detail: str = Field(default="", description="why it was refused")


class StateReportResults(_Wire):
    results: list[StateReportResult] = Field(description="one per report, in the order sent")


class LogLine(_Wire):
    """One line of a run's output. ``seq`` numbers a run's lines from 0 across all its attempts."""

    seq: int = Field(ge=0)
    time: datetime
    stream: Literal["stdout", "stderr", "system"] = "stdout"
    text: str


class LogBatch(_Wire):
    lines: list[LogLine] = Field(max_length=100_000)


class LogBatchResult(_Wire):
    stored: int = Field(description="lines newly stored (resent ones are not counted)")
    last_seq: int = Field(description="highest seq the server holds for this run, -1 when none")


class LogPage(_Wire):
    """``GET /api/flow_runs/{id}/logs``: lines with ``seq > after``, oldest first."""

    lines: list[LogLine]
    next_after: int = Field(description="pass as ``after`` to read on")
    finished: bool = Field(description="the run is in a final state and no line after these is stored")


ON_API_LOST = ("keep", "stop")


class LostPolicy(_Wire):
    """What an agent does with its runs when it cannot reach its API (``runs.on_api_lost``), so the server
    knows when a silent agent has stopped them by itself. Agents that do not send one count as ``keep``."""

    on_api_lost: Literal["keep", "stop"] = "keep"
    api_lost_after: float = Field(default=60.0, gt=0, le=10**9, description="seconds without contact")
    stop_grace: float = Field(default=30.0, ge=0, le=10**9, description="seconds between stop_signal and SIGKILL")
    beat_interval: float = Field(default=10.0, gt=0, le=10**9, description="seconds between its heartbeats")


class AgentRegister(_Wire):
    """``POST /api/agents``: an agent announces itself (again after a restart or a 404 on heartbeat)."""

    name: Text = Field(min_length=1, max_length=200)
    labels: list[Text] = Field(default_factory=list)
    run_unlabeled: bool = False
    run_config_types: list[Text] = Field(default_factory=lambda: ["universal", "local"])
    hostname: Text = ""
    version: Text = ""
    config_generation: int = 0
    config_hash: Text = ""
    config_error: Relayed | None = None
    max_concurrent_runs: int | None = Field(
        default=None, ge=0, le=2**31 - 1, description="runs it starts at once; 0 = no cap; null = not told"
    )
    lost_policy: LostPolicy | None = Field(default=None, exclude_if=_is_none, description="null: 'keep'")


class Agent(_Wire):
    id: str
    name: str
    labels: list[str]
    run_unlabeled: bool
    run_config_types: list[str]
    hostname: str
    version: str
    config_generation: int
    config_hash: str
    config_error: str | None
    registered: datetime
    last_heartbeat: datetime
    running_runs: list[str] = Field(default_factory=list)
    lost: bool = Field(
        default=False, description="its heartbeat stopped for longer than agent_timeout (and it did not stop cleanly)"
    )
    stopped: datetime | None = Field(
        default=None, exclude_if=_is_none, description="when it said it stopped cleanly (null while it runs)"
    )
    max_concurrent_runs: int | None = Field(
        default=None, exclude_if=_is_none, description="runs it starts at once; 0 = no cap; null = not told"
    )
    lost_policy: LostPolicy | None = Field(
        default=None, exclude_if=_is_none, description="what it does with its runs when cut off from the API"
    )


class Heartbeat(_Wire):
    """``POST /api/agents/{id}/heartbeat``: the agent is alive; what it runs and which config it has."""

    running_runs: list[Text] = Field(default_factory=list)
    labels: list[Text] = Field(default_factory=list)
    run_unlabeled: bool = False
    config_generation: int = 0
    config_hash: Text = ""
    config_error: Relayed | None = None
    max_concurrent_runs: int | None = Field(
        default=None, ge=0, le=2**31 - 1, description="runs it starts at once; 0 = no cap; null = not told"
    )
    lost_policy: LostPolicy | None = Field(default=None, exclude_if=_is_none, description="null: 'keep'")


class HeartbeatReply(_Wire):
    cancel: list[str] = Field(default_factory=list, description="ids of this agent's runs to cancel")


class ClaimRequest(_Wire):
    """``POST /api/agents/{id}/claim``: up to ``slots`` runs this agent accepts, now.

    The labels and types are sent on every claim so that a reload applies to the very next claim.
    The server answers as soon as work (or a cancel for one of this agent's runs) exists, or after ``wait``.
    """

    slots: int = Field(ge=0, le=1000)
    wait: float = Field(default=0.0, ge=0, le=300)
    labels: list[Text] = Field(default_factory=list)
    run_unlabeled: bool = False
    run_config_types: list[Text] = Field(default_factory=lambda: ["universal", "local"])


class ClaimedRun(_Wire):
    """A run handed to this agent: the run (now Submitted), its flow version and a run-scoped token."""

    run: FlowRun
    flow: Flow
    token: str = Field(description="bearer token that can read this run and write its state and logs")
    next_log_seq: int = Field(default=0, ge=0, description="first seq to use for this attempt's output")


class ClaimReply(_Wire):
    runs: list[ClaimedRun] = Field(default_factory=list)
    cancel: list[str] = Field(default_factory=list, description="ids of this agent's runs to cancel")


class ErrorBody(_Wire):
    """Every 4xx/5xx body: ``{"detail": "flow 'x' not found"}``."""

    detail: str
