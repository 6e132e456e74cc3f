"""A server factory parametrized over the storage backends: SQLite always, PostgreSQL when configured.

Import ``make_server`` (and ``pg_database``, ``pg_url``, which it uses on PostgreSQL) into a test module::

    from tests.server.backends import make_server, pg_database, pg_url
    def test_x(make_server): server = make_server(agent_timeout=1.0)
"""

from __future__ import annotations

import functools

import pytest

from tests.conftest import MakeApiServer
from tests.pg.support import pg_database, pg_url, requires_postgres

__all__ = ["make_server", "pg_database", "pg_url"]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=requires_postgres)])
def make_server(request: pytest.FixtureRequest, make_api_server: MakeApiServer) -> MakeApiServer:
    """``make_api_server`` on SQLite in tmp_path, or on a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return make_api_server
    return functools.partial(make_api_server, database_url=request.getfixturevalue("pg_url"))
