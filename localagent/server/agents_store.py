"""Agents: register, heartbeat, disconnect, list, and the sweeps that notice a silent agent or a run it never
started.

One record per agent name and host: an agent that registers again after it stopped (cleanly, or silently
for longer than ``agent_timeout``) takes over its earlier record, id included, provided no run is still
active under it; so restarts do not add records, and runs listed by agent keep one id across them. A
second agent of the same name on the same host while the first one runs gets a record of its own. Usage::

    agent = agents.register(AgentRegister(name="host-1"))
    reply = agents.heartbeat(agent.id, Heartbeat(running_runs=[...]))
    agents.disconnect(agent.id)              # it stops cleanly: listed as stopped, not lost
    agents.sweep_lost()                      # called every few seconds by the background sweep

What happens to the runs of a silent agent (Unknown, reconnection, replacement by policy, the lost timeout)
lives in :mod:`localagent.server.lost_runs`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from localagent.api.models import Agent, AgentRegister, Heartbeat, HeartbeatReply, LostPolicy, StateName
from localagent.errors import ApiNotFound
from localagent.server.agent_labels import AgentLabels, LabelSet
from localagent.server.database import Database, dump_json, load_json
from localagent.server.flows_store import FlowStore
from localagent.server.lost_runs import (
    AGENT_COLUMNS,
    LostRunSweep,
    crash_unstarted,
    mark_unknown,
    policy_of,
    reconnect,
)
from localagent.server.notify import RUNS, Notifier, agent_topic, logs_topic
from localagent.server.settings import ServerSettings
from localagent.server.tables import UtcTime, agents, flow_runs
from localagent.server.transitions import ACTIVE_STATES, HELD_STATES, apply_transition

S = StateName
_SETTLED = (S.SUCCESS.value, S.FAILED.value, S.CANCELLED.value)
_BEAT = (
    sa.update(agents)
    .where(agents.c.id == sa.bindparam("agent_id"))
    .values(
        {
            column: sa.bindparam(f"new_{column}", type_=agents.c[column].type)
            for column in (
                "last_heartbeat",
                "running_runs",
                "labels",
                "run_unlabeled",
                "config_generation",
                "config_hash",
                "config_error",
                "max_concurrent_runs",
                "lost_policy",
            )
        }
    )
)
_CANCELLING_OF_AGENT = sa.select(flow_runs.c.id).where(
    flow_runs.c.agent_id == sa.bindparam("agent_id"), flow_runs.c.state == S.CANCELLING.value
)
_OWNERS = sa.select(flow_runs.c.id, flow_runs.c.agent_id, flow_runs.c.state).where(
    flow_runs.c.id.in_(sa.bindparam("run_ids", expanding=True))
)
_ACTIVE_UNDER = sa.exists().where(flow_runs.c.agent_id == agents.c.id, flow_runs.c.state.in_(HELD_STATES))
_GONE = sa.or_(agents.c.stopped.is_not(None), agents.c.last_heartbeat < sa.bindparam("cutoff", type_=UtcTime))
_REUSABLE = (
    sa.select(agents.c.id)
    .where(
        agents.c.name == sa.bindparam("name"),
        agents.c.hostname == sa.bindparam("hostname"),
        _GONE,
        ~_ACTIVE_UNDER,
    )
    .order_by(agents.c.last_heartbeat.desc(), agents.c.id)
    .limit(1)
)
_DISCONNECT = (
    sa.update(agents)
    .where(agents.c.id == sa.bindparam("agent_id"))
    .values(stopped=sa.bindparam("now", type_=UtcTime), running_runs="[]")
)
_SUBMITTED_BEFORE = (
    sa.select(flow_runs)
    .where(
        flow_runs.c.agent_id == sa.bindparam("agent_id"),
        flow_runs.c.state == S.SUBMITTED.value,
        flow_runs.c.submitted_at < sa.bindparam("cutoff", type_=flow_runs.c.submitted_at.type),
    )
    .order_by(flow_runs.c.id)
)


class AgentStore:
    """Agents and their liveness."""

    def __init__(
        self,
        database: Database,
        flow_store: FlowStore,
        notifier: Notifier,
        settings: ServerSettings,
        clock: Callable[[], datetime],
    ) -> None:
        self._db = database
        self._flows = flow_store
        self._notifier = notifier
        self._settings = settings
        self._clock = clock
        self._labels = AgentLabels(forget_after=10 * settings.agent_timeout)
        self._lost_runs = LostRunSweep(database, flow_store, settings, clock)

    def register(self, request: AgentRegister) -> Agent:
        """Take over this name and host's stopped (or lost, idle) record, else add one (see the module doc)."""
        now = self._clock()
        cutoff = now - timedelta(seconds=self._settings.agent_timeout)
        values = {
            "name": request.name,
            "labels": dump_json(request.labels),
            "run_unlabeled": request.run_unlabeled,
            "run_config_types": dump_json(request.run_config_types),
            "hostname": request.hostname,
            "version": request.version,
            "config_generation": request.config_generation,
            "config_hash": request.config_hash,
            "config_error": request.config_error,
            "max_concurrent_runs": request.max_concurrent_runs,
            "lost_policy": _policy_text(request.lost_policy),
            "running_runs": "[]",
            "registered": now,
            "last_heartbeat": now,
            "stopped": None,
        }
        with self._db.begin() as conn:
            identity = {"name": request.name, "hostname": request.hostname, "cutoff": cutoff}
            agent_id = conn.execute(_REUSABLE, identity).scalar()
            # Compare-and-set: of two agents of one name starting together, only one takes the record over.
            if (
                agent_id is None
                or not conn.execute(
                    sa.update(agents).where(agents.c.id == agent_id, _GONE).values(values), {"cutoff": cutoff}
                ).rowcount
            ):
                agent_id = uuid.uuid4().hex
                conn.execute(sa.insert(agents).values(id=agent_id, **values))
        self._labels.record(agent_id, LabelSet.of(request.labels, request.run_unlabeled))
        return self.get(agent_id)

    def disconnect(self, agent_id: str) -> Agent:
        """The agent stops cleanly: it is listed as stopped (not lost) and its record awaits its next start."""
        with self._db.begin() as conn:
            if conn.execute(_DISCONNECT, {"agent_id": agent_id, "now": self._clock()}).rowcount != 1:
                raise ApiNotFound(404, f"agent {agent_id!r} not found")
        self._labels.forget(agent_id)
        return self.get(agent_id)

    def get(self, agent_id: str) -> Agent:
        with self._db.connect() as conn:
            row = conn.execute(sa.select(agents).where(agents.c.id == agent_id)).first()
        if row is None:
            raise ApiNotFound(404, f"agent {agent_id!r} not found; register it again")
        return self._model(row, self._clock())

    def list_agents(self, *, history: bool = False) -> list[Agent]:
        """Agents by name; without ``history`` only the latest record of each name and host, and every
        online one (records left by earlier versions, which registered anew at each start, are history)."""
        now = self._clock()
        with self._db.connect() as conn:
            rows = conn.execute(sa.select(agents).order_by(agents.c.name, agents.c.registered)).all()
        models = [self._model(row, now) for row in rows]
        if history:
            return models
        latest: dict[tuple[str, str], Agent] = {}
        for agent in models:
            key = (agent.name, agent.hostname)
            if key not in latest or agent.last_heartbeat > latest[key].last_heartbeat:
                latest[key] = agent
        return [a for a in models if a is latest[(a.name, a.hostname)] or (not a.lost and a.stopped is None)]

    def label_changes(self, agent_id: str) -> int:
        """A marker to pass to ``labels_since`` (taken before a claim starts waiting)."""
        return self._labels.changes(agent_id)

    def labels_since(self, agent_id: str, seen: int) -> LabelSet | None:
        """The labels the agent heartbeated with after ``label_changes`` returned ``seen``, if it did."""
        return self._labels.since(agent_id, seen)

    def heartbeat(self, agent_id: str, beat: Heartbeat) -> HeartbeatReply:
        now = self._clock()
        running = list(dict.fromkeys(beat.running_runs))
        values = {
            "agent_id": agent_id,
            "new_last_heartbeat": now,
            "new_running_runs": dump_json(running),
            "new_labels": dump_json(beat.labels),
            "new_run_unlabeled": beat.run_unlabeled,
            "new_config_generation": beat.config_generation,
            "new_config_hash": beat.config_hash,
            "new_config_error": beat.config_error,
            "new_max_concurrent_runs": beat.max_concurrent_runs,
            "new_lost_policy": _policy_text(beat.lost_policy),
        }
        with self._db.begin() as conn:
            if conn.execute(_BEAT, values).rowcount != 1:
                raise ApiNotFound(404, f"agent {agent_id!r} not found; register it again")
            crashed = self._crash_unstarted(conn, agent_id, set(running), now)
            # Before the cancels: a reconnected run is this agent's again, not one taken from it.
            crashed += reconnect(conn, agent_id, running, now, self._flows)
            cutoff = now - timedelta(seconds=self._settings.submitted_grace)
            crashed += crash_unstarted(conn, agent_id, running, cutoff, now, self._flows)
            cancel = _cancels_for(conn, agent_id, running)
        if self._labels.record(agent_id, LabelSet.of(beat.labels, beat.run_unlabeled)):
            self._notifier.notify(agent_topic(agent_id))  # its waiting claims may ask with old labels
        if crashed:
            self._notifier.notify(RUNS, *(logs_topic(run_id) for run_id in crashed))
        return HeartbeatReply(cancel=cancel)

    def sweep_lost(self) -> list[str]:
        """Runs of agents silent for longer than ``agent_timeout``: Unknown (the agent may still run them;
        see ``lost_runs``), or Crashed when the agent said it stopped; returns the ids of the runs moved."""
        now = self._clock()
        timeout = self._settings.agent_timeout
        cutoff = now - timedelta(seconds=timeout)
        query = (
            sa.select(flow_runs, agents.c.stopped.label("agent_stopped"), *AGENT_COLUMNS)
            .join(agents, agents.c.id == flow_runs.c.agent_id)
            .where(flow_runs.c.state.in_(ACTIVE_STATES), agents.c.last_heartbeat < cutoff)
            # One lock order for every writer of many runs, so two sweeps (two server processes on one
            # PostgreSQL database) or a sweep and a heartbeat cannot deadlock.
            .order_by(flow_runs.c.id)
        )
        self._labels.forget_silent()
        moved: list[str] = []
        with self._db.begin() as conn:
            rows = conn.execute(query).all()
            silent = [row for row in rows if row.agent_stopped is None]
            moved += mark_unknown(conn, silent, timeout, now, self._flows)
            for row in rows:
                if row.agent_stopped is None:
                    continue
                # It drained and said it stopped: these runs are not running anywhere.
                message = f"agent {row.agent_name} stopped without reporting the end of this run"
                # A run that was being cancelled is not retried: nobody wants it any more.
                retry = row.state != S.CANCELLING.value
                if apply_transition(conn, row, S.CRASHED, message, now, self._flows, retry=retry):
                    moved.append(row.id)
        moved += self._lost_runs.sweep()
        if moved:
            self._notifier.notify(RUNS, *(logs_topic(run_id) for run_id in moved))
        return moved

    def _crash_unstarted(self, conn: Connection, agent_id: str, running: set[str], now: datetime) -> list[str]:
        """Submitted runs the agent does not know about, well after the claim: the claim reply was lost."""
        cutoff = now - timedelta(seconds=self._settings.submitted_grace)
        rows = conn.execute(_SUBMITTED_BEFORE, {"agent_id": agent_id, "cutoff": cutoff}).all()
        crashed = []
        for row in rows:
            if row.id in running:
                continue
            if apply_transition(conn, row, S.CRASHED, "agent did not start the run", now, self._flows):
                crashed.append(row.id)
        return crashed

    def _model(self, row: Any, now: datetime) -> Agent:
        silent = (now - row.last_heartbeat).total_seconds()
        return Agent(
            id=row.id,
            name=row.name,
            labels=load_json(row.labels),
            run_unlabeled=row.run_unlabeled,
            run_config_types=load_json(row.run_config_types),
            hostname=row.hostname,
            version=row.version,
            config_generation=row.config_generation,
            config_hash=row.config_hash,
            config_error=row.config_error,
            registered=row.registered,
            last_heartbeat=row.last_heartbeat,
            running_runs=load_json(row.running_runs),
            lost=row.stopped is None and silent > self._settings.agent_timeout,
            stopped=row.stopped,
            max_concurrent_runs=row.max_concurrent_runs,
            lost_policy=policy_of(row.lost_policy) if row.lost_policy else None,
        )


def _policy_text(policy: LostPolicy | None) -> str | None:
    return None if policy is None else policy.model_dump_json()


def _cancels_for(conn: Connection, agent_id: str, running: list[str]) -> list[str]:
    """This agent's Cancelling runs, plus runs it still runs that the server has taken from it
    (crashed after it was thought lost, retried elsewhere, or unknown)."""
    cancel = list(conn.execute(_CANCELLING_OF_AGENT, {"agent_id": agent_id}).scalars())
    if running:
        known = {row.id: row for row in conn.execute(_OWNERS, {"run_ids": running})}
        for run_id in running:
            row = known.get(run_id)
            if (
                row is None
                or (row.state not in ACTIVE_STATES and row.state not in _SETTLED)
                or (row.agent_id != agent_id and row.state in ACTIVE_STATES)
            ):
                cancel.append(run_id)
    return list(dict.fromkeys(cancel))
