"""Wake-ups across server processes through PostgreSQL LISTEN/NOTIFY.

Server A is a real ``localagent server`` process; server B runs in this process (a real server on a
loopback port) with a re-check interval of an hour, so a claim long-polling on B can only learn of A's
changes through a notification: without one it would answer empty when its wait ends.
"""

from __future__ import annotations

import dataclasses
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from localagent.api.client import ApiClient
from localagent.api.models import AgentRegister, ClaimReply, ClaimRequest, FlowRunCreate, FlowSpec, StateUpdate
from localagent.server.pg_wakeups import APPLICATION_NAME
from localagent.server.runner import ServerThread
from localagent.server.services import Services
from tests.pg.support import ServerProcess, pg_database, pg_url, requires_postgres
from tests.support.wait import wait_for

pytestmark = requires_postgres
__all__ = ["pg_database", "pg_url"]

WAIT = 20.0
"""A claim's wait: far longer than any notification takes, so an empty reply means none arrived."""


@pytest.fixture
def servers(pg_url: str, tmp_path: Path) -> Iterator[tuple[ApiClient, ApiClient, ServerThread]]:
    a = ServerProcess(tmp_path, "a", pg_url)
    b = ServerThread(address="127.0.0.1:0", database_url=pg_url, recheck_interval=3600.0)
    b.start()
    try:
        a.wait_serving()
        with ApiClient(a.url, retries=0, timeout=10) as api_a, ApiClient(b.url, retries=0, timeout=10) as api_b:
            api_a.register_flow(FlowSpec(name="hello", command=["true"]))
            wait_for(lambda: services(b).notifier.cross_process, what="B to listen")
            yield api_a, api_b, b
    finally:
        b.stop()
        a.stop()


def services(server: ServerThread) -> Services:
    svc: Services = server.app.state.services
    return svc


def in_background(call: Any) -> tuple[threading.Thread, list[ClaimReply]]:
    replies: list[ClaimReply] = []
    thread = threading.Thread(target=lambda: replies.append(call()), daemon=True)
    thread.start()
    return thread, replies


def waiting_claims(server: ServerThread) -> int:
    """How many claims (of any agent) wait on B's notifier for runs."""
    return services(server).notifier.waiting("runs")


def test_a_run_created_through_a_reaches_a_claim_waiting_on_b(
    servers: tuple[ApiClient, ApiClient, ServerThread],
) -> None:
    api_a, api_b, b = servers
    agent = api_b.register_agent(AgentRegister(name="worker", run_unlabeled=True)).id
    thread, replies = in_background(lambda: api_b.claim(agent, ClaimRequest(slots=1, wait=WAIT, run_unlabeled=True)))
    wait_for(lambda: waiting_claims(b) == 1, what="the claim to wait on B")
    run = api_a.create_run(FlowRunCreate(flow="hello"))
    thread.join(WAIT + 10)
    assert [claimed.run.id for claimed in replies[0].runs] == [run.id]


def test_an_idle_claim_queries_nothing_while_listening(
    servers: tuple[ApiClient, ApiClient, ServerThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    _api_a, api_b, b = servers
    svc = services(b)
    agent = api_b.register_agent(AgentRegister(name="idle", run_unlabeled=True)).id
    calls: list[str] = []
    real = svc.claims.claim_now

    def counting(*args: Any) -> Any:
        calls.append(args[0])
        return real(*args)

    monkeypatch.setattr(svc.claims, "claim_now", counting)
    # Not listening, the claim would re-run every 0.05 s; listening, only a notification wakes it.
    monkeypatch.setattr(svc.claim_poll, "_settings", dataclasses.replace(svc.settings, recheck_interval=0.05))
    reply = api_b.claim(agent, ClaimRequest(slots=1, wait=2.0, run_unlabeled=True))
    assert reply.runs == []
    # Once when it arrives, once more when its wait ends; nothing in between.
    assert calls == [agent, agent]


def test_a_cancel_through_a_reaches_the_agent_waiting_on_b(
    servers: tuple[ApiClient, ApiClient, ServerThread],
) -> None:
    api_a, api_b, b = servers
    agent = api_b.register_agent(AgentRegister(name="worker", run_unlabeled=True)).id
    run = api_a.create_run(FlowRunCreate(flow="hello"))
    claimed = api_b.claim(agent, ClaimRequest(slots=1, wait=0, run_unlabeled=True)).runs
    assert [c.run.id for c in claimed] == [run.id]
    with api_b.scoped(claimed[0].token) as channel:
        channel.set_state(run.id, StateUpdate(state="Running", pid=1))
    thread, replies = in_background(lambda: api_b.claim(agent, ClaimRequest(slots=0, wait=WAIT, run_unlabeled=True)))
    wait_for(lambda: waiting_claims(b) == 1, what="the cancel watch to wait on B")
    api_a.cancel_run(run.id)
    thread.join(WAIT + 10)
    assert replies[0].cancel == [run.id]


def test_the_listener_reconnects_after_its_connection_is_killed(
    servers: tuple[ApiClient, ApiClient, ServerThread], pg_url: str
) -> None:
    api_a, api_b, b = servers
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    database = sa.make_url(pg_url).database

    def listeners() -> list[int]:
        with admin.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :db AND application_name = :app"),
                {"db": database, "app": APPLICATION_NAME},
            ).all()
        return [int(row[0]) for row in rows]

    wakeups = services(b).wakeups
    assert wakeups is not None
    try:
        before = set(listeners())
        assert len(before) == 2  # one per server process
        old = wakeups.listener_pid
        assert old in before
        with admin.connect() as conn:
            conn.execute(sa.select(sa.func.pg_terminate_backend(old)))
        wait_for(lambda: wakeups.listener_pid not in (None, old), what="B to listen on a new connection")
        wait_for(lambda: services(b).notifier.cross_process, what="B to listen again")
        agent = api_b.register_agent(AgentRegister(name="worker", run_unlabeled=True)).id
        thread, replies = in_background(
            lambda: api_b.claim(agent, ClaimRequest(slots=1, wait=WAIT, run_unlabeled=True))
        )
        wait_for(lambda: waiting_claims(b) == 1, what="the claim to wait on B")
        run = api_a.create_run(FlowRunCreate(flow="hello"))
        thread.join(WAIT + 10)
        assert [claimed.run.id for claimed in replies[0].runs] == [run.id]
    finally:
        admin.dispose()


def test_a_bad_listen_database_url_is_refused_at_start(pg_url: str) -> None:
    for url, message in (
        ("nonsense", "cannot use the LISTEN database URL (--listen-database)"),
        ("sqlite:///x.db", "the LISTEN database URL must be PostgreSQL, not sqlite"),
    ):
        result = subprocess.run(
            ["localagent", "server", "--address", "127.0.0.1:0", "--database", pg_url, "--listen-database", url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1
        assert message in result.stderr and "Traceback" not in result.stderr
