"""The HTTP client with several API URLs: failover to the next URL, failback to the first, one shared choice.

Real servers on loopback ports; "down" is a port nobody listens on (connection refused) or a proxy that
answers 503, as a load balancer with no server behind it does.
"""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from localagent.api.client import ApiClient
from localagent.api.endpoints import Endpoints, join_urls, same_servers, split_urls
from localagent.api.models import FlowSpec
from localagent.errors import ApiRejected, ApiUnavailable
from localagent.server.runner import ServerThread
from tests.ports import free_port, free_ports
from tests.support.wait import wait_for


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    running = ServerThread(address="127.0.0.1:0", database_url=f"sqlite:///{tmp_path / 'api.db'}")
    running.start()
    try:
        yield running
    finally:
        running.stop()


class _Unavailable(http.server.BaseHTTPRequestHandler):
    """A proxy whose servers are all down: 503 for everything."""

    def do_GET(self) -> None:
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def proxy_503() -> Iterator[str]:
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{proxy.server_address[1]}"
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_a_closed_port_first_in_the_list_fails_over_to_the_next_url_at_once(
    server: ServerThread, caplog: pytest.LogCaptureFixture
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    switches: list[str] = []
    endpoints = Endpoints((closed, server.url), on_switch=switches.append)
    caplog.set_level(logging.WARNING, logger="localagent.api")
    with ApiClient(endpoints, retries=0, timeout=5) as api:
        assert api.url == closed
        api.register_flow(FlowSpec(name="hello", command=["true"]))  # not idempotent: still tried on the next URL
        assert api.url == server.url
        assert [flow.name for flow in api.list_flows()] == ["hello"]
        scoped = api.scoped("run-token")
        assert scoped.url == server.url  # one choice for every client of the agent
    assert switches == ["failover"]
    warnings = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert warnings == [f"API {closed} unreachable (connection refused); using {server.url}"]


def test_a_proxy_answering_503_counts_as_down(server: ServerThread, proxy_503: str) -> None:
    with ApiClient(join_urls([proxy_503, server.url]), retries=0, timeout=5) as api:
        assert api.health().status == "ok"
        assert api.url == server.url


def test_the_last_url_answering_503_is_the_answer(proxy_503: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with ApiClient(join_urls([closed, proxy_503]), retries=0, timeout=5) as api:
        with pytest.raises(ApiRejected, match="HTTP 503"):
            api.list_flows()
        assert api.url == closed  # nothing answered but the proxy's 503: no switch


def test_no_url_answering_names_every_url_and_reason() -> None:
    first, second = (f"http://127.0.0.1:{port}" for port in free_ports(2))
    with ApiClient(join_urls([first, second]), retries=0, timeout=5) as api, pytest.raises(ApiUnavailable) as raised:
        api.list_flows()
    message = str(raised.value)
    assert f"{first}: connection refused" in message and f"{second}: connection refused" in message


def test_the_client_returns_to_the_first_url_once_it_answers_again(tmp_path: Path) -> None:
    port = free_port()
    first_url = f"http://127.0.0.1:{port}"
    database = f"sqlite:///{tmp_path / 'api.db'}"
    second = ServerThread(address="127.0.0.1:0", database_url=database)
    second.start()
    switches: list[str] = []
    endpoints = Endpoints((first_url, second.url), failback_interval=0.2, on_switch=switches.append)
    first: ServerThread | None = None
    try:
        with ApiClient(endpoints, retries=0, timeout=5) as api:
            api.list_flows()
            assert api.url == second.url
            api.list_flows()  # the first URL is still down: the probe finds nothing, requests stay on the second
            assert api.url == second.url
            first = ServerThread(address=first_url.removeprefix("http://"), database_url=database)
            first.start()

            def back() -> bool:
                api.list_flows()  # requests trigger the probe (at most every failback_interval)
                return api.url == first_url

            wait_for(back, what="the client to return to the first URL")
    finally:
        second.stop()
        if first is not None:
            first.stop()
    assert switches == ["failover", "failback"]


def test_a_new_list_applies_to_clients_sharing_it(server: ServerThread) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    endpoints = Endpoints((closed,))
    with ApiClient(endpoints, retries=0, timeout=5) as api:
        run_client = api.scoped("token")
        endpoints.replace((closed, server.url))  # a reload added a server
        assert run_client.url == closed  # still listed: still in use until it fails
        assert api.health().status == "ok"  # fails over on the new list...
        assert run_client.url == server.url  # ...for the run's client too
        endpoints.replace((closed,))  # the URL in use left the list: the first one is used
        assert run_client.url == closed


def test_url_specs() -> None:
    assert split_urls("http://a:1/ http://b:2") == ("http://a:1", "http://b:2")
    assert join_urls(("http://a", "http://b")) == "http://a http://b"
    assert join_urls("http://a") == "http://a"
    assert same_servers("http://a http://b", "http://b http://c")
    assert not same_servers("http://a", "http://b")
    assert not same_servers("embedded", "http://a")


def test_the_agents_http_factory_shares_one_choice_and_follows_the_config_in_force() -> None:
    from localagent.config.model import AgentConfig
    from localagent.runtime.backends import HttpClients

    config = AgentConfig.model_validate({"api": {"url": ["http://a:1", "http://b:1"], "failback_interval": "2s"}})
    factory = HttpClients(lambda: config)
    agent_client = factory("http://a:1 http://b:1", "key", 5.0)
    old_run_client = factory("http://a:1", "token", 5.0)  # a run claimed with an older list
    assert isinstance(agent_client, ApiClient) and isinstance(old_run_client, ApiClient)
    assert agent_client.endpoints is old_run_client.endpoints
    assert agent_client.endpoints.urls == ("http://a:1", "http://b:1")  # the config in force wins
    assert agent_client.endpoints.failback_interval == 2.0
    elsewhere = factory("http://c:1", "key", 5.0)  # another API (no server in common)
    assert isinstance(elsewhere, ApiClient) and elsewhere.endpoints is not agent_client.endpoints
