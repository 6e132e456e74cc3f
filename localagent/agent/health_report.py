"""The body of the agent's ``/health``: who it is, which API, which config, when it last reached the API.

Usage::

    contact = Contact(); contact.mark()        # after every successful poll or heartbeat
    healthy, body = health_report(config, session, runs, contact, draining=False)

Unhealthy once no poll or heartbeat succeeded for three poll intervals (or, at start, since it started).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from localagent.config.render import public_hash

if TYPE_CHECKING:
    from localagent.agent.config_in_force import ConfigInForce
    from localagent.agent.coordination.session import AgentSession
    from localagent.agent.run_table import RunTable


class Contact:
    """When the agent last reached its API (monotonic, for health; wall clock, for the body)."""

    def __init__(self) -> None:
        self.started_at = time.monotonic()
        self.last: float | None = None
        self.last_wall: datetime | None = None

    def mark(self) -> None:
        self.last = time.monotonic()
        self.last_wall = datetime.now(timezone.utc)


def health_report(
    config_in_force: ConfigInForce, session: AgentSession, runs: RunTable, contact: Contact, *, draining: bool
) -> tuple[bool, dict[str, Any]]:
    """``(healthy, body)`` for ``/health``."""
    loaded, generation, error = config_in_force.state()
    config = loaded.config
    since = contact.last if contact.last is not None else contact.started_at
    silent_for = time.monotonic() - since
    healthy = silent_for <= 3 * config.agent.poll_interval
    running = runs.ids()
    body: dict[str, Any] = {
        "status": ("ok" if error is None else "config error") if healthy else "unhealthy",
        "agent": {
            "name": config.agent.name,
            "id": session.agent_id,
            "labels": list(config.agent.effective_labels()),
            "run_unlabeled": config.agent.run_unlabeled,
        },
        "api": {
            "url": session.api_url(),
            "urls": list(config.api.urls) if config.api.url != "embedded" else [session.api_url()],
            "embedded": config.api.url == "embedded",
            "left_behind": session.left_behind(),
        },
        "config": {
            "files": [str(path) for path in loaded.files],
            "generation": generation,
            "hash": public_hash(loaded),
            "error": error,
        },
        "last_poll": contact.last_wall.isoformat() if contact.last_wall else None,
        "seconds_since_last_poll": round(silent_for, 3) if contact.last is not None else None,
        "runs_running": len(running),
        "running_runs": running,
        "draining": draining,
    }
    return healthy, body
