"""ServerThread: starts fast on a free port, refuses a busy port and non-loopback without a key, stops cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from localagent.errors import ServiceError
from localagent.server.runner import ServerThread
from tests.conftest import MakeApiServer


def test_fixture_server_answers_health(api_server: ServerThread) -> None:
    reply = requests.get(api_server.url + "/api/health", timeout=5)
    assert reply.status_code == 200
    assert reply.json()["database"] == "sqlite"


def test_port_in_use_is_a_service_error(api_server: ServerThread, tmp_path: Path) -> None:
    other = ServerThread(address=f"127.0.0.1:{api_server.port}", database_url=f"sqlite:///{tmp_path / 'o.db'}")
    with pytest.raises(ServiceError, match="already in use"):
        other.start()


def test_refuses_non_loopback_without_key(tmp_path: Path) -> None:
    server = ServerThread(address="0.0.0.0:0", database_url=f"sqlite:///{tmp_path / 'o.db'}")
    with pytest.raises(ServiceError, match="without an API key"):
        server.start()


def test_repeated_start_stop_in_one_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'same.db'}"
    for _ in range(5):
        server = ServerThread(address="127.0.0.1:0", database_url=url)
        server.start()
        assert requests.get(server.url + "/api/health", timeout=5).ok
        server.stop()
        server.stop()  # idempotent
        with pytest.raises(requests.ConnectionError):
            requests.get(server.url + "/api/health", timeout=5)


def test_stop_wakes_an_open_long_poll(make_api_server: MakeApiServer) -> None:
    server = make_api_server()
    agent = requests.post(server.url + "/api/agents", json={"name": "a"}, timeout=5).json()
    import threading

    replies: list[int] = []

    def poll() -> None:
        try:
            reply = requests.post(
                f"{server.url}/api/agents/{agent['id']}/claim", json={"slots": 1, "wait": 25}, timeout=30
            )
            replies.append(reply.status_code)
        except requests.RequestException:
            replies.append(-1)

    thread = threading.Thread(target=poll)
    thread.start()
    import time

    time.sleep(0.3)
    server.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert replies == [200]


def test_bad_database_url_is_reported(tmp_path: Path) -> None:
    server = ServerThread(address="127.0.0.1:0", database_url="nosuchdb://x")
    with pytest.raises(Exception, match="cannot use database URL"):
        server.start()
