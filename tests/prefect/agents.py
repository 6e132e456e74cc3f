"""Agents serving a Prefect pool for the tests: their TOML, start (until the pool shows them online), stop."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path
from typing import Any

from tests.e2e.support import Agent, wait_for
from tests.prefect.support import PrefectServer

FINAL = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def pool_name() -> str:
    return f"pool-{uuid.uuid4().hex[:8]}"


def sections(
    server: PrefectServer,
    pool: str,
    limit: int = 0,
    *,
    agent: dict[str, Any] | None = None,
    api: dict[str, Any] | None = None,
    **prefect: Any,
) -> dict[str, dict[str, Any]]:
    """An agent's TOML tables serving ``pool`` of ``server``; ``agent``/``api`` add keys to those tables."""
    return {
        "agent": {"poll_interval": "5s", "max_concurrent_runs": limit, **(agent or {})},
        "api": {"kind": "prefect", "url": server.url, **(api or {})},
        "prefect": {"work_pool": pool, "command": [server.python, "-m", "prefect.engine"], **prefect},
        "logs": {"show_flow_logs": True},
        "runs": {"stop_grace": "10s"},
    }


def start_agent(
    tmp_path: Path,
    server: PrefectServer,
    pool: str,
    name: str = "la",
    limit: int = 0,
    *,
    online: bool = True,
    agent: dict[str, Any] | None = None,
    api: dict[str, Any] | None = None,
    **prefect: Any,
) -> Agent:
    """``localagent run`` serving ``pool``; with ``online``, once the pool shows it online."""
    started = Agent(tmp_path, name, sections(server, pool, limit, agent=agent, api=api, **prefect))
    if online:
        wait_for(lambda: worker_online(server, pool, started), timeout=60, what="the agent's worker heartbeat")
    return started


def worker_online(server: PrefectServer, pool: str, agent: Agent) -> bool:
    if agent.popen.poll() is not None:
        raise AssertionError(f"agent exited {agent.popen.returncode}:\n{agent.stderr}")
    try:
        workers = server.workers(pool)
    except AssertionError:
        return False
    return any(worker["name"] == agent.name and worker["status"] == "ONLINE" for worker in workers)


def stop_agent(agent: Agent) -> None:
    agent.signal(signal.SIGTERM)
    agent.signal(signal.SIGTERM)
    agent.wait(60)
