"""Why a Scheduled run waits: the explanation a run carries when it is read, the way a CI server explains a
stuck job.

A run that is due and not taken is matched against the agents online now (not stopped, heard from within
``agent_timeout``) in the order a claim would reject it: no agent at all, none of its run-config type, none
whose labels accept it, every accepting agent at its ``max_concurrent_runs``. A run that is not due yet
waits for its start or, on a later attempt, for the flow's retry delay. The answer is computed on read and
never stored: claims and state reports do not pay for it, and a read costs at most three small queries
(online agents, the last agent when none is online, active runs per accepting agent), shared by all the
runs of one listing. Messages hold absolute times, not "in 3m", so a watcher can print one again only
when it changes. Usage::

    explainer = WaitingExplainer(agent_timeout=60.0)
    runs = explainer.annotate(conn, runs, now)      # Scheduled runs get ``waiting``; others are returned as is
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from localagent.api.models import FlowRun, StateName, Waiting
from localagent.server.database import load_json
from localagent.server.tables import UtcTime, agents, flow_runs
from localagent.server.transitions import ACTIVE_STATES

_NAMED = 5
"""Agents named in one message at most."""

_ONLINE = (
    sa.select(
        agents.c.id,
        agents.c.name,
        agents.c.labels,
        agents.c.run_unlabeled,
        agents.c.run_config_types,
        agents.c.max_concurrent_runs,
    )
    .where(agents.c.stopped.is_(None), agents.c.last_heartbeat >= sa.bindparam("cutoff", type_=UtcTime))
    .order_by(agents.c.name, agents.c.id)
)
_LAST_SEEN = (
    sa.select(agents.c.name, agents.c.hostname, agents.c.last_heartbeat, agents.c.stopped)
    .order_by(agents.c.last_heartbeat.desc())
    .limit(1)
)
_ACTIVE_PER_AGENT = (
    sa.select(flow_runs.c.agent_id, sa.func.count())
    .where(flow_runs.c.agent_id.in_(sa.bindparam("agent_ids", expanding=True)), flow_runs.c.state.in_(ACTIVE_STATES))
    .group_by(flow_runs.c.agent_id)
)


@dataclass(frozen=True)
class _Online:
    id: str
    name: str
    labels: tuple[str, ...]
    run_unlabeled: bool
    run_config_types: frozenset[str]
    cap: int | None  # 0: no cap; None: the agent did not tell
    label_set: frozenset[str]

    def accepts(self, wanted: frozenset[str]) -> bool:
        """``claims.label_rule_accepts`` on sets made once per read (a listing asks it runs x agents times)."""
        return wanted <= self.label_set if wanted else self.run_unlabeled or not self.label_set

    def describe_labels(self) -> str:
        return f"[{', '.join(self.labels)}]" if self.labels else "no labels"


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_NAMED])
    return shown + (f" and {len(items) - _NAMED} more" if len(items) > _NAMED else "")


class WaitingExplainer:
    """Explains Scheduled runs as of one read (see the module docstring)."""

    def __init__(self, agent_timeout: float) -> None:
        self._agent_timeout = agent_timeout

    def annotate(self, conn: Connection, runs: list[FlowRun], now: datetime) -> list[FlowRun]:
        """``runs`` with ``waiting`` set on the Scheduled ones (the same list when there are none)."""
        if not any(run.state is StateName.SCHEDULED for run in runs):
            return runs
        read = _Read(conn, now, now - timedelta(seconds=self._agent_timeout))
        for run in runs:
            if run.state is StateName.SCHEDULED:
                # The models were just built from rows for this read: setting the field in place is safe.
                run.waiting = read.explain(run)
        return runs


class _Read:
    """What one read learned about the agents, loaded lazily and at most once."""

    def __init__(self, conn: Connection, now: datetime, cutoff: datetime) -> None:
        self._conn = conn
        self._now = now
        self._cutoff = cutoff
        self._online: list[_Online] | None = None
        self._active: dict[str, int] = {}
        self._counted: set[str] = set()
        self._due: dict[tuple[str, tuple[str, ...]], Waiting] = {}

    def explain(self, run: FlowRun) -> Waiting:
        if run.scheduled_start <= self._now:
            # Runs of one listing share a few label sets: a due run's answer depends on nothing else.
            key = (run.run_config_type, tuple(run.labels))
            if key not in self._due:
                self._due[key] = self._explain_due(run)
            return self._due[key]
        if run.attempt > 1:
            due = _when(run.scheduled_start)
            message = f"attempt {run.attempt} waits out the flow's retry delay: due at {due}"
            return Waiting(reason="retry_delay", message=message)
        return Waiting(reason="not_due", message=f"not due yet: scheduled for {_when(run.scheduled_start)}")

    def _explain_due(self, run: FlowRun) -> Waiting:
        online = self._agents()
        if not online:
            return Waiting(reason="no_agent", message=self._nobody_online())
        typed = [agent for agent in online if run.run_config_type in agent.run_config_types]
        if not typed:
            taken = sorted({kind for agent in online for kind in agent.run_config_types})
            return Waiting(
                reason="unsupported_run_config",
                message=f"no online agent takes run config type {run.run_config_type!r} "
                f"(the online agents take {', '.join(taken) or 'none'})",
            )
        wanted = frozenset(run.labels)
        accepting = [agent for agent in typed if agent.accepts(wanted)]
        if not accepting:
            return _no_label_match(run, typed)
        return self._capacity(accepting)

    def _agents(self) -> list[_Online]:
        if self._online is None:
            self._online = [
                _Online(
                    id=row.id,
                    name=row.name,
                    labels=tuple(load_json(row.labels)),
                    run_unlabeled=bool(row.run_unlabeled),
                    run_config_types=frozenset(load_json(row.run_config_types)),
                    cap=row.max_concurrent_runs,
                    label_set=frozenset(load_json(row.labels)),
                )
                for row in self._conn.execute(_ONLINE, {"cutoff": self._cutoff})
            ]
        return self._online

    def _nobody_online(self) -> str:
        last = self._conn.execute(_LAST_SEEN).first()
        if last is None:
            return "no agent is online: none has ever registered with this API (start one: `localagent run`)"
        who = f"{last.name}" + (f" on {last.hostname}" if last.hostname and last.hostname != last.name else "")
        if last.stopped is not None:
            return f"no agent is online: the last one, {who}, stopped at {_when(last.stopped)}"
        return f"no agent is online: the last one, {who}, was last heard from at {_when(last.last_heartbeat)}"

    def _running(self, accepting: list[_Online]) -> dict[str, int]:
        missing = [agent.id for agent in accepting if agent.id not in self._counted]
        if missing:
            counts = self._conn.execute(_ACTIVE_PER_AGENT, {"agent_ids": missing})
            self._active.update({agent_id: int(n) for agent_id, n in counts})
            self._counted.update(missing)
        return self._active

    def _capacity(self, accepting: list[_Online]) -> Waiting:
        running = self._running(accepting)
        free = [a for a in accepting if not a.cap or running.get(a.id, 0) < a.cap]
        if not free:
            busy = [f"{a.name} runs {running.get(a.id, 0)} of {a.cap}" for a in accepting]
            return Waiting(
                reason="agents_busy",
                message=f"every agent that takes this run is at its max_concurrent_runs: {_names(busy)}",
            )
        agent = free[0]
        count = running.get(agent.id, 0)
        if agent.cap is None:
            load = f"{count} running; it did not report a cap"
        elif agent.cap == 0:
            load = f"{count} running, no cap"
        else:
            load = f"{count} of {agent.cap} slots in use"
        others = f" (and {len(free) - 1} more)" if len(free) > 1 else ""
        return Waiting(
            reason="claimable",
            message=f"agent {agent.name}{others} takes this run and has a free slot ({load}); "
            "it should claim it with its next poll",
        )


def _no_label_match(run: FlowRun, typed: list[_Online]) -> Waiting:
    if not run.labels:
        agents_labels = [f"{a.name} {a.describe_labels()}" for a in typed]
        return Waiting(
            reason="unlabeled_run",
            message="the run has no labels and no online agent takes unlabeled runs "
            f"(agents with labels take only runs labelled for them: {_names(agents_labels)}); "
            "give the run a label such an agent has (--label), or start an agent with "
            "agent.run_unlabeled = true (`localagent run --set agent.run_unlabeled=true`)",
        )
    wanted = frozenset(run.labels)
    closest = max(typed, key=lambda a: (len(wanted & a.label_set), -len(a.label_set - wanted)))
    missing = [label for label in run.labels if label not in closest.labels]
    return Waiting(
        reason="no_matching_agent",
        message=f"no online agent has every label of this run [{', '.join(run.labels)}]; "
        f"the closest, {closest.name}, has {closest.describe_labels()} (missing {', '.join(missing)})",
    )
