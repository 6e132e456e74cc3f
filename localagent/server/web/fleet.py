"""The agents as a fleet: grouped by the config they run, so drift after a config push shows at a glance.

Usage::

    fleet = build_fleet(svc.agents.list_agents(), now)
    fleet.groups        # [ConfigGroup(hash="4b15...", agents=[...], errors=0), ...], largest first
    fleet.stopped       # agents replaced by a newer registration of the same name on the same host

An agent registers anew (a new id) each time it starts, so the server keeps its old entries. The newest
entry of a name on a host is the agent; older ones are shown apart as *stopped* (it restarted), never as lost.
An agent that said it stopped (``Agent.stopped``, when the API has that field) is listed there too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from localagent.api.models import Agent


@dataclass(frozen=True)
class FleetAgent:
    agent: Agent
    status: str
    """``online``, ``lost`` (heartbeat stopped) or ``stopped`` (replaced by a newer registration)"""
    seconds_since_heartbeat: float

    @property
    def slots(self) -> int | None:
        """How many runs it may run at once, when the API tells (``Agent.max_concurrent_runs``)."""
        value = getattr(self.agent, "max_concurrent_runs", None)
        return value if isinstance(value, int) else None


@dataclass
class ConfigGroup:
    config_hash: str
    agents: list[FleetAgent] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(1 for a in self.agents if a.agent.config_error)

    @property
    def hosts(self) -> int:
        return len({a.agent.hostname or a.agent.name for a in self.agents})

    @property
    def generations(self) -> list[int]:
        return sorted({a.agent.config_generation for a in self.agents})


@dataclass(frozen=True)
class Fleet:
    groups: list[ConfigGroup]
    stopped: list[FleetAgent]

    @property
    def online(self) -> int:
        return sum(1 for g in self.groups for a in g.agents if a.status == "online")

    @property
    def lost(self) -> int:
        return sum(1 for g in self.groups for a in g.agents if a.status == "lost")

    @property
    def with_errors(self) -> int:
        return sum(g.errors for g in self.groups)


def build_fleet(agents: Sequence[Agent], now: datetime) -> Fleet:
    newest: dict[tuple[str, str], Agent] = {}
    for agent in agents:
        key = (agent.name, agent.hostname)
        current = newest.get(key)
        if current is None or (agent.registered, agent.id) > (current.registered, current.id):
            newest[key] = agent
    groups: dict[str, ConfigGroup] = {}
    stopped: list[FleetAgent] = []
    for agent in agents:
        silent = max(0.0, (now - agent.last_heartbeat).total_seconds())
        # ``stopped``: a field of newer APIs (the agent said goodbye); read with getattr so older ones work.
        if newest[(agent.name, agent.hostname)] is not agent or getattr(agent, "stopped", None):
            stopped.append(FleetAgent(agent, "stopped", silent))
            continue
        status = "lost" if agent.lost else "online"
        groups.setdefault(agent.config_hash, ConfigGroup(agent.config_hash)).agents.append(
            FleetAgent(agent, status, silent)
        )
    ordered = sorted(groups.values(), key=lambda g: (-len(g.agents), g.config_hash))
    for group in ordered:
        group.agents.sort(key=lambda a: (a.status != "online", a.agent.hostname, a.agent.name))
    stopped.sort(key=lambda a: a.agent.last_heartbeat, reverse=True)
    return Fleet(groups=ordered, stopped=stopped)
