"""Shared fixtures: a live API server on a free loopback port with SQLite in tmp_path.

def test_x(api_server): requests.get(api_server.url + "/api/health")
def test_y(make_api_server): server = make_api_server(api_keys=("k",), agent_timeout=1.0)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from localagent.server.runner import ServerThread

MakeApiServer = Callable[..., ServerThread]


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads xdist_group markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under xdist (``--dist loadgroup`` in pyproject.toml) the Prefect tests share one worker, and so the one
    session-scoped Prefect server, instead of each worker starting its own; likewise the browser tests."""
    for item in items:
        for marker in ("prefect", "browser"):
            if item.get_closest_marker(marker) is not None:
                item.add_marker(pytest.mark.xdist_group(marker))


@pytest.fixture
def make_api_server(tmp_path: Path) -> Iterator[MakeApiServer]:
    """A factory: ``make_api_server(api_keys=("k",), agent_timeout=2.0, ...)`` -> a started ServerThread.

    Defaults: 127.0.0.1 on a free port, a fresh SQLite file in tmp_path. Every server is stopped at the end.
    """
    started: list[ServerThread] = []

    def make(**kwargs: Any) -> ServerThread:
        kwargs.setdefault("address", "127.0.0.1:0")
        kwargs.setdefault("database_url", f"sqlite:///{tmp_path / f'api-{len(started)}.db'}")
        server = ServerThread(**kwargs)
        server.start()
        started.append(server)
        return server

    yield make
    for server in reversed(started):
        server.stop()


@pytest.fixture
def api_server(make_api_server: MakeApiServer) -> ServerThread:
    """A started API server without keys (127.0.0.1, free port, SQLite in tmp_path)."""
    return make_api_server()
