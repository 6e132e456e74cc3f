"""Server processes behind a PgBouncer in transaction pooling mode (skipped without the pgbouncer binary).

PgBouncer hands a server connection to a client only for one transaction, so a ``LISTEN`` through it goes
nowhere. With ``--listen-database`` pointing at PostgreSQL directly, wake-ups cross servers as without it;
without, the listener finds itself deaf (its probe never arrives) and long-polls fall back to re-checking
the database every ``recheck_interval``: nothing is missed, only later.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from localagent.api.client import ApiClient
from localagent.api.models import AgentRegister, ClaimReply, ClaimRequest, FlowRunCreate, FlowSpec
from localagent.server.runner import ServerThread
from localagent.server.services import Services
from tests.pg.support import POSTGRES_URL_ENV, ServerProcess, pg_database, requires_postgres
from tests.support.wait import wait_for

PGBOUNCER = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)
pytestmark = [
    requires_postgres,
    pytest.mark.skipif(PGBOUNCER is None, reason="pgbouncer is not installed (apt-get install -y pgbouncer)"),
]

WAIT = 20.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def own_database() -> Iterator[sa.URL]:
    """A database for this test alone: PgBouncer ignores ``search_path`` options, so no schema per test."""
    yield from pg_database.__wrapped__()  # type: ignore[attr-defined]


@pytest.fixture
def bouncer(own_database: sa.URL, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(URL through PgBouncer, direct URL) of a fresh database; PgBouncer in transaction mode."""
    pg_database = own_database
    base = sa.make_url(os.environ[POSTGRES_URL_ENV])
    port = _free_port()
    ini = tmp_path / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"* = host={base.host} port={base.port} user={base.username} password={base.password}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "auth_type = any\npool_mode = transaction\ndefault_pool_size = 8\nmax_client_conn = 500\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
    )
    ini.chmod(0o644)
    tmp_path.chmod(0o755)
    assert PGBOUNCER is not None
    command = [PGBOUNCER, *(["-u", "nobody"] if os.geteuid() == 0 else []), str(ini)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def accepting() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"pgbouncer exited: {process.stdout.read() if process.stdout else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    try:
        wait_for(accepting, what="pgbouncer to listen")
        through = pg_database.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
        yield through, pg_database.render_as_string(hide_password=False)
    finally:
        process.terminate()
        process.wait(15)


def _claim_in_background(api: ApiClient, agent: str) -> tuple[threading.Thread, list[ClaimReply]]:
    replies: list[ClaimReply] = []
    request = ClaimRequest(slots=1, wait=WAIT, run_unlabeled=True)
    thread = threading.Thread(target=lambda: replies.append(api.claim(agent, request)), daemon=True)
    thread.start()
    return thread, replies


def _services(server: ServerThread) -> Services:
    svc: Services = server.app.state.services
    return svc


def test_through_pgbouncer_with_a_direct_listen_connection(bouncer: tuple[str, str], tmp_path: Path) -> None:
    through, direct = bouncer
    flags = ("--no-db-prepared-statements", "--listen-database", direct)
    a = ServerProcess(tmp_path, "a", through, *flags)
    b = ServerThread(
        address="127.0.0.1:0",
        database_url=through,
        recheck_interval=3600.0,
        listen_database_url=direct,
        db_prepared_statements=False,
    )
    b.start()
    try:
        a.wait_serving()
        with ApiClient(a.url, retries=0) as api_a, ApiClient(b.url, retries=0) as api_b:
            api_a.register_flow(FlowSpec(name="hello", command=["true"]))
            wait_for(lambda: _services(b).notifier.cross_process, what="B to hear its probe")
            agent = api_b.register_agent(AgentRegister(name="worker", run_unlabeled=True)).id
            for _ in range(3):  # repeated statements: nothing prepared goes missing between server connections
                thread, replies = _claim_in_background(api_b, agent)
                wait_for(lambda: _services(b).notifier.waiting("runs") == 1, what="the claim to wait on B")
                run = api_a.create_run(FlowRunCreate(flow="hello"))
                thread.join(WAIT + 10)
                assert [claimed.run.id for claimed in replies[0].runs] == [run.id]
            created = api_a.create_runs([FlowRunCreate(flow="hello") for _ in range(50)]).runs
            assert len(api_b.list_runs(flow="hello", limit=1000)) == 53 == len(created) + 3
    finally:
        b.stop()
        a.stop()


def test_listen_through_pgbouncer_is_found_deaf(bouncer: tuple[str, str], caplog: pytest.LogCaptureFixture) -> None:
    through, _direct = bouncer
    with ServerThread(address="127.0.0.1:0", database_url=through, db_prepared_statements=False) as b:
        wakeups = _services(b).wakeups
        assert wakeups is not None
        wait_for(lambda: wakeups.deaf_probes >= 1, timeout=60, what="B's listener to miss its probe")
    assert "do not reach this server's LISTEN connection (a PgBouncer in transaction pooling mode?" in caplog.text


def test_without_listen_claims_through_pgbouncer_recheck(bouncer: tuple[str, str], tmp_path: Path) -> None:
    through, _direct = bouncer
    a = ServerProcess(tmp_path, "a", through, "--no-db-prepared-statements", "--no-listen")
    b = ServerThread(address="127.0.0.1:0", database_url=through, db_prepared_statements=False, listen=False)
    b.start()
    try:
        a.wait_serving()
        assert _services(b).wakeups is None and not _services(b).notifier.cross_process
        with ApiClient(a.url, retries=0) as api_a, ApiClient(b.url, retries=0) as api_b:
            api_a.register_flow(FlowSpec(name="hello", command=["true"]))
            agent = api_b.register_agent(AgentRegister(name="worker", run_unlabeled=True)).id
            thread, replies = _claim_in_background(api_b, agent)
            wait_for(lambda: _services(b).notifier.waiting("runs") == 1, what="the claim to wait on B")
            run = api_a.create_run(FlowRunCreate(flow="hello"))
            thread.join(WAIT + 10)
            assert [claimed.run.id for claimed in replies[0].runs] == [run.id]  # found by the 1 s re-check
    finally:
        b.stop()
        a.stop()
