"""The server's settings: one frozen object built by the CLI (or the agent's embedded mode) and handed down.

Usage::

    settings = ServerSettings(database_url="sqlite:////tmp/la.db", api_keys=("secret",))
    app = create_app(settings)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

API_KEYS_ENV = "LOCALAGENT_SERVER_API_KEYS"
"""Comma-separated API keys, added to the ones given with ``--api-key``."""


def api_keys_from_env(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """The keys listed in ``LOCALAGENT_SERVER_API_KEYS`` (comma-separated, blanks ignored)."""
    value = (environ if environ is not None else os.environ).get(API_KEYS_ENV, "")
    return tuple(key.strip() for key in value.split(",") if key.strip())


@dataclass(frozen=True)
class ServerSettings:
    """Everything the API server needs to know; the defaults suit the embedded mode."""

    database_url: str
    api_keys: tuple[str, ...] = ()
    agent_timeout: float = 60.0
    """An agent silent (no heartbeat, no claim) for longer than this is lost and its runs Unknown."""
    lost_timeout: float | None = 86400.0
    """A run Unknown (its agent silent) this long becomes Crashed (retried only if its flow sets retry_lost);
    None: it waits for its agent forever."""
    submitted_grace: float = 30.0
    """A Submitted run its agent does not list as running this long after the claim is Crashed."""
    sweep_interval: float | None = None
    """How often the sweep runs; default: a quarter of ``agent_timeout``, between 0.2 and 5 seconds."""
    recheck_interval: float = 1.0
    """On PostgreSQL, long-polls re-check the database this often while changes made by other server
    processes are not notified here (``listen`` off, or its connection lost)."""
    listen: bool = True
    """PostgreSQL: publish changes with NOTIFY and LISTEN for the other server processes' changes."""
    listen_database_url: str | None = None
    """The database URL of the LISTEN connection when it must differ from ``database_url`` (a PgBouncer in
    transaction pooling mode cannot carry LISTEN: point this one at PostgreSQL directly)."""
    db_pool_size: int = 20
    """Database connections each server process keeps open (PostgreSQL; SQLite files use the same pool)."""
    db_max_overflow: int = 20
    """Connections opened beyond ``db_pool_size`` under load, closed when returned."""
    db_prepared_statements: bool = True
    """PostgreSQL: let the driver prepare statements it repeats; off behind a PgBouncer (< 1.21) in
    transaction pooling mode, where a prepared statement may be missing on the next server connection."""

    def __post_init__(self) -> None:
        if any(not key.strip() or key != key.strip() for key in self.api_keys):
            raise ValueError("an API key must not be blank or start or end with whitespace")
        if self.agent_timeout <= 0:
            raise ValueError("agent_timeout must be > 0")
        if self.lost_timeout is not None and self.lost_timeout <= 0:
            raise ValueError("lost_timeout must be > 0 (or None: never)")
        if self.db_pool_size < 1:
            raise ValueError("db_pool_size must be >= 1")
        if self.db_max_overflow < 0:
            raise ValueError("db_max_overflow must be >= 0")
        if self.recheck_interval <= 0:
            raise ValueError("recheck_interval must be > 0")

    @property
    def effective_sweep_interval(self) -> float:
        if self.sweep_interval is not None:
            return self.sweep_interval
        return min(5.0, max(0.2, self.agent_timeout / 4))
