"""PostgreSQL for the tests: a database per test module, a schema per test, and servers as real processes.

The database comes from ``LOCALAGENT_TEST_POSTGRES_URL`` (``eval "$(.ci/postgres.sh)"`` sets it); its role
must be allowed to create databases. Usage::

    pytestmark = requires_postgres
    def test_x(pg_url: str): ServerThread(database_url=pg_url) ...
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from tests.e2e.support import Process, wait_for

POSTGRES_URL_ENV = "LOCALAGENT_TEST_POSTGRES_URL"

requires_postgres = pytest.mark.skipif(
    not os.environ.get(POSTGRES_URL_ENV),
    reason=f'{POSTGRES_URL_ENV} is not set; run `eval "$(.ci/postgres.sh)"` (as root) to test with PostgreSQL',
)


def _admin_engine(url: sa.URL) -> sa.Engine:
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)


@pytest.fixture(scope="module")
def pg_database() -> Iterator[sa.URL]:
    """A uniquely named database for this test module, dropped (with its connections) afterwards."""
    base = sa.make_url(os.environ[POSTGRES_URL_ENV])
    name = f"la_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine(base)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield base.set(database=name)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_url(pg_database: sa.URL) -> str:
    """A URL whose ``search_path`` is a fresh, empty schema: every test starts from no tables at all."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine(pg_database)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    url = pg_database.update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


_LISTENING = re.compile(r"localagent API on (http://\S+)")


class ServerProcess(Process):
    """``localagent server --address 127.0.0.1:0 --database URL`` in its own process; ``url`` once it serves."""

    def __init__(self, workdir: Path, name: str, database_url: str, *extra: str) -> None:
        args = ["server", "--address", "127.0.0.1:0", "--database", database_url, "--log-level", "warning"]
        super().__init__([*args, *extra], workdir, name)
        self.url = ""

    def wait_serving(self, timeout: float = 30.0) -> str:
        def listening() -> str | None:
            if self.popen.poll() is not None:
                raise AssertionError(f"server exited with {self.popen.returncode}:\n{self.stderr}")
            match = _LISTENING.search(self.stderr)
            return match.group(1) if match else None

        self.url = wait_for(listening, timeout=timeout, what="the server to listen")
        return self.url

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(params=["sqlite", "postgresql"])
def sqlite_or_pg_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database, once per backend: a SQLite file in tmp_path, then a fresh PostgreSQL schema
    (skipped without ``LOCALAGENT_TEST_POSTGRES_URL``). Import ``pg_database`` and ``pg_url`` alongside."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'api.db'}"
    if not os.environ.get(POSTGRES_URL_ENV):
        pytest.skip(f"{POSTGRES_URL_ENV} is not set")
    url: str = request.getfixturevalue("pg_url")
    return url
