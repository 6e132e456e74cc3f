"""What each agent last said it accepts, in memory, so that a waiting claim notices a relabelled agent.

A claim long-poll carries the labels the agent had when it asked. When the agent reloads with other
labels it heartbeats at once; the heartbeat records the new set here and wakes that agent's waiting
claims, which answer empty so that the next claim asks with the new labels. Usage::

    seen = labels.changes("agent-1")                 # before waiting
    labels.record("agent-1", LabelSet.of(["etl"], run_unlabeled=False))   # -> True: it changed
    labels.since("agent-1", seen)                    # the new set, or None if unchanged since ``seen``
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class LabelSet:
    """The part of an agent's config a claim is matched on (label order does not matter)."""

    labels: frozenset[str]
    run_unlabeled: bool

    @classmethod
    def of(cls, labels: Iterable[str], run_unlabeled: bool) -> LabelSet:
        return cls(frozenset(labels), run_unlabeled)


@dataclass
class _Entry:
    labels: LabelSet
    changes: int
    seen_at: float


class AgentLabels:
    """Thread-safe ``agent id -> latest LabelSet`` with a change counter per agent."""

    def __init__(self, forget_after: float) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._forget_after = forget_after

    def record(self, agent_id: str, labels: LabelSet) -> bool:
        """Store the set an agent registered or heartbeated with; True when it is new or differs from the
        last one (waiting claims should then look)."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(agent_id)
            if entry is None:
                self._entries[agent_id] = _Entry(labels, 0, now)
                return True
            entry.seen_at = now
            if entry.labels == labels:
                return False
            entry.labels = labels
            entry.changes += 1
            return True

    def changes(self, agent_id: str) -> int:
        with self._lock:
            entry = self._entries.get(agent_id)
            return -1 if entry is None else entry.changes

    def since(self, agent_id: str, seen: int) -> LabelSet | None:
        """The agent's latest set if it was recorded (changed, or first seen) after ``changes()`` said ``seen``."""
        with self._lock:
            entry = self._entries.get(agent_id)
            if entry is None or entry.changes == seen:
                return None
            return entry.labels

    def forget(self, agent_id: str) -> None:
        """Drop an agent that stopped (it records its set again when it registers)."""
        with self._lock:
            self._entries.pop(agent_id, None)

    def forget_silent(self) -> None:
        """Drop agents not heard from for a long while (they re-register with a new id anyway)."""
        cutoff = time.monotonic() - self._forget_after
        with self._lock:
            for agent_id in [a for a, entry in self._entries.items() if entry.seen_at < cutoff]:
                del self._entries[agent_id]
