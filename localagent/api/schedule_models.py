"""Wire models of schedules: ``FlowSpec.schedules`` entries and what ``GET /api/flows/{name}/schedules`` answers.

Usage::

    spec = ScheduleSpec(cron="30 2 * * *", timezone="Europe/Berlin", overlap="skip")
    spec = ScheduleSpec(interval="15m", anchor="2024-01-01T00:07:00Z")

A schedule is part of its flow's spec (a change makes a new flow version); whether it is paused and when
it fires next is server state, shown in ``Schedule``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from localagent.api.cron import parse_cron, parse_zone
from localagent.config.units import parse_duration

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
MAX_INTERVAL = 366 * 24 * 3600.0
MAX_SCHEDULES = 50


class Overlap(str, Enum):
    """What a due time does while a run of the same schedule is still unfinished."""

    ALLOW = "allow"
    SKIP = "skip"
    CANCEL_PREVIOUS = "cancel_previous"
    QUEUE = "queue"


class Catchup(str, Enum):
    """What becomes of times missed while no server was running (or the schedule could not be served)."""

    LATEST = "latest"
    ALL = "all"
    NONE = "none"


class ScheduleSpec(BaseModel):
    """One schedule of a flow: a cron expression or an interval, in a time zone, with its policies."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        pattern=NAME_PATTERN,
        description="unique within the flow; default: its position, '1', '2', ...",
    )
    cron: str | None = Field(
        default=None, description="five cron fields or an alias (@hourly, @daily, ...); day and month names allowed"
    )
    interval: float | None = Field(
        default=None, description="seconds (accepts '15m' too), whole seconds >= 1; counts real elapsed time"
    )
    anchor: datetime | None = Field(
        default=None,
        description="an instant the interval fires at (default: 2000-01-01 00:00 in the schedule's time zone)",
    )
    timezone: str = Field(default="UTC", description="IANA time zone name the cron fields are read in")
    parameters: dict[str, Any] = Field(default_factory=dict, description="merged over the flow's parameters")
    overlap: Overlap = Overlap.ALLOW
    catchup: Catchup = Catchup.LATEST
    deadline: float | None = Field(
        default=None, gt=0, description="seconds (accepts '10m'): a time later than this is not run at all"
    )
    jitter: float = Field(default=0.0, ge=0, description="seconds (accepts '30s'): start up to this much later")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else parse_cron(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        parse_zone(value)
        return value

    @field_validator("interval", "deadline", "jitter", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @field_validator("interval")
    @classmethod
    def _whole_seconds(cls, value: float | None) -> float | None:
        if value is None:
            return None
        if value < 1 or value != int(value):
            raise ValueError(f"must be a whole number of seconds >= 1, got {value:g}s")
        if value > MAX_INTERVAL:
            raise ValueError("must be at most 366 days")
        return value

    @field_validator("jitter", "deadline")
    @classmethod
    def _at_most_a_year(cls, value: float | None) -> float | None:
        if value is not None and value > MAX_INTERVAL:
            raise ValueError("must be at most 366 days")
        return value

    @field_validator("anchor")
    @classmethod
    def _anchor_in_range(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("give the anchor with its UTC offset, e.g. 2024-01-01T00:00:00+01:00")
        if not 1971 <= value.astimezone(timezone.utc).year <= 9000:
            raise ValueError("must be between the years 1971 and 9000")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleSpec:
        if (self.cron is None) == (self.interval is None):
            raise ValueError("a schedule has exactly one of 'cron' or 'interval'")
        if self.anchor is not None and self.interval is None:
            raise ValueError("'anchor' belongs to an interval schedule")
        return self

    @property
    def kind(self) -> str:
        return "cron" if self.cron is not None else "interval"


class Schedule(BaseModel):
    """A flow's schedule as the server runs it: its spec, paused or not, and the next times it fires."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="'<flow>/<schedule name>'; runs made by it carry it in 'schedule'")
    flow: str
    name: str
    flow_version: int = Field(description="the flow version whose spec declares this schedule")
    spec: ScheduleSpec
    paused: bool
    next_times: list[datetime] = Field(description="the next (up to) five fire times in UTC; empty when paused")
    next_times_local: list[datetime] = Field(description="the same times in the schedule's time zone")
    queued_time: datetime | None = Field(
        default=None, description="overlap 'queue': the fire time waiting for the running run to end"
    )
    last_time: datetime | None = Field(default=None, description="the last fire time handled (run or not)")
