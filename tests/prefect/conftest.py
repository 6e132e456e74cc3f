"""``prefect_server``: one real Prefect 3 server for the session; ``@pytest.mark.prefect`` skips without one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.prefect.support import PrefectServer, prefect_python


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    python, reason = prefect_python() if any(item.get_closest_marker("prefect") for item in items) else ("", "")
    if python:
        return
    for item in items:
        if item.get_closest_marker("prefect"):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    python, reason = prefect_python()
    if python is None:
        pytest.skip(reason)
    server = PrefectServer(python, Path(tmp_path_factory.mktemp("prefect-home")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


MakePrefectServer = Callable[..., PrefectServer]


@pytest.fixture
def make_prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MakePrefectServer]:
    """``make_prefect_server(auth_string=None)``: a server of the test's own (to stop, restart, lock)."""
    python, reason = prefect_python()
    if python is None:
        pytest.skip(reason)
    made: list[PrefectServer] = []

    def make(auth_string: str | None = None) -> PrefectServer:
        server = PrefectServer(python, Path(tmp_path_factory.mktemp("prefect-own")), auth_string=auth_string)
        made.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in made:
            server.stop()
