"""``agent ls`` for a fleet: filters, and the summary grouped by config (``--by-config``).

Filtering is done on the listing the API returns (one request; a fleet is hundreds of agents, not
millions). Usage::

    wanted = AgentFilter(labels=("gpu",), host="web-*", status="online", config_hash="3fa2")
    agents = [agent for agent in agents if wanted.matches(agent)]
    rows = config_summary(agents)
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from localagent.api.models import Agent

STATUSES = ("online", "stopped", "lost")


def agent_status(agent: Agent) -> str:
    """``online``, ``stopped`` (it said so on its way out) or ``lost`` (silent for the server's agent timeout)."""
    if agent.stopped is not None:
        return "stopped"
    return "lost" if agent.lost else "online"


@dataclass(frozen=True)
class AgentFilter:
    """Which agents to list; every given criterion must hold."""

    labels: tuple[str, ...] = ()
    """The agent has every one of these labels."""
    host: str | None = None
    """Its hostname equals this, or matches it as a shell pattern (``web-*``); case does not matter (DNS)."""
    status: str | None = None
    """One of ``STATUSES``."""
    config_hash: str | None = None
    """Its config hash starts with this (as ``agent ls`` prints a hash's first 12 characters)."""

    def matches(self, agent: Agent) -> bool:
        if any(label not in agent.labels for label in self.labels):
            return False
        if self.host is not None and not fnmatch.fnmatchcase(agent.hostname.lower(), self.host.lower()):
            return False
        if self.status is not None and agent_status(agent) != self.status:
            return False
        return self.config_hash is None or agent.config_hash.startswith(self.config_hash)


@dataclass(frozen=True)
class ConfigGroup:
    """The agents that run one config (hash and generation)."""

    config_hash: str
    generation: int
    agents: int
    online: int
    errors: int
    """Agents of the group that report a config error (they run this config, a newer one was refused)."""
    hosts: tuple[str, ...]


def config_summary(agents: Sequence[Agent]) -> list[ConfigGroup]:
    """Agents grouped by (config hash, generation), the largest group first."""
    groups: dict[tuple[str, int], list[Agent]] = {}
    for agent in agents:
        groups.setdefault((agent.config_hash, agent.config_generation), []).append(agent)
    summary = [
        ConfigGroup(
            config_hash=config_hash,
            generation=generation,
            agents=len(members),
            online=sum(agent_status(agent) == "online" for agent in members),
            errors=sum(agent.config_error is not None for agent in members),
            hosts=tuple(sorted({agent.hostname or "-" for agent in members})),
        )
        for (config_hash, generation), members in groups.items()
    ]
    summary.sort(key=lambda group: (-group.agents, group.config_hash, group.generation))
    return summary
