"""The events the agent's threads share to follow its life: claiming, draining, closing.

Usage::

    life = Lifecycle()
    life.stopping.set()     # no new claims (a drain began)
    life.closed.set()       # every loop ends

Each loop of :mod:`localagent.agent.coordination` waits on these instead of sleeping, so a stop reaches
every thread at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Lifecycle:
    stopping: threading.Event = field(default_factory=threading.Event)
    """Claim no more runs (a drain began, or the agent closes)."""
    closed: threading.Event = field(default_factory=threading.Event)
    """The agent shuts down: the heartbeat, the cancel watch and the health endpoint end."""
    slot_freed: threading.Event = field(default_factory=threading.Event)
    """A run ended or the config changed: a full claim loop looks again."""
    claims_over: threading.Event = field(default_factory=threading.Event)
    """The claim loop ended (``max_polls``, or it failed)."""
    beat_now: threading.Event = field(default_factory=threading.Event)
    """Heartbeat at once (a new config, a shutdown)."""
    not_claiming: threading.Event = field(default_factory=threading.Event)
    """Every slot is busy, or the agent drains: the cancel watch long-polls."""
