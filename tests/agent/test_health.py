"""The health endpoint: /health 200 or 503 as polls succeed or stop, /metrics, re-binding."""

from __future__ import annotations

import json
import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from localagent.agent.health import HealthServer
from localagent.agent.metrics import AgentMetrics
from localagent.errors import ServiceError
from tests.ports import free_port, free_ports
from tests.support.agent_harness import Harness
from tests.support.fake_orchestrator import FakeServer, loaded_config
from tests.support.wait import wait_for


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except urllib.error.URLError:
        return 0, b""  # not listening (yet, or any more)


def test_health_and_metrics_are_served_and_rebind() -> None:
    state: dict[str, Any] = {"healthy": True}
    metrics = AgentMetrics()
    metrics.run_started()
    server = HealthServer(report=lambda: (state["healthy"], {"status": "x"}), metrics=metrics)
    server.start("127.0.0.1:0")
    try:
        status, body = get(f"http://{server.address}/health")
        assert (status, json.loads(body)) == (200, {"status": "x"})
        state["healthy"] = False
        assert get(f"http://{server.address}/health")[0] == 503
        status, body = get(f"http://{server.address}/metrics")
        assert status == 200
        assert b"localagent_runs_started_total 1.0" in body
        assert get(f"http://{server.address}/nope")[0] == 404
        old = server.address
        new_port = free_port()
        server.rebind(f"127.0.0.1:{new_port}")
        assert server.address == f"127.0.0.1:{new_port}"
        assert get(f"http://{server.address}/health")[0] == 503
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"http://{old}/health", timeout=2)
    finally:
        server.stop()
    assert server.address == ""


def test_a_port_in_use_is_a_service_error_and_the_old_address_keeps_serving() -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    busy = f"127.0.0.1:{blocker.getsockname()[1]}"
    server = HealthServer(report=lambda: (True, {}), metrics=AgentMetrics())
    try:
        with pytest.raises(ServiceError, match=r"health\.address"):
            server.start(busy)
        server.start("127.0.0.1:0")
        with pytest.raises(ServiceError):
            server.rebind(busy)
        assert get(f"http://{server.address}/health")[0] == 200
    finally:
        server.stop()
        blocker.close()


def test_agent_health_goes_503_when_polls_fail_for_three_intervals(tmp_path: Path) -> None:
    fake = FakeServer()
    port = free_port()
    loaded = loaded_config(
        tmp_path, agent={"labels": ["etl"], "poll_interval": 0.2}, health={"address": f"127.0.0.1:{port}"}
    )
    harness = Harness(loaded, fake)
    url = f"http://127.0.0.1:{port}/health"
    fake.wait_for(lambda: len(fake.claims) >= 1)
    wait_for(lambda: get(url)[0] == 200, timeout=10.0)
    body = json.loads(get(url)[1])
    assert body["agent"]["name"] == "a1"
    assert "etl" in body["agent"]["labels"]
    assert body["api"] == {"url": "http://api.test", "urls": ["http://api.test"], "embedded": False, "left_behind": []}
    assert body["config"]["generation"] == 1
    assert body["config"]["files"] == [str(tmp_path / "agent.toml")]
    assert body["last_poll"] is not None
    fake.down = True
    wait_for(lambda: get(url)[0] == 503, timeout=10.0)
    assert json.loads(get(url)[1])["status"] == "unhealthy"
    fake.down = False
    wait_for(lambda: get(url)[0] == 200, timeout=10.0)
    harness.inbox.deliver(signal.SIGTERM)
    assert harness.join() == 0
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


def test_health_address_rebinds_on_apply_config(tmp_path: Path) -> None:
    fake = FakeServer()
    first_port, second_port = free_ports(2)
    first = loaded_config(tmp_path, health={"address": f"127.0.0.1:{first_port}"})
    second = loaded_config(tmp_path, health={"address": f"127.0.0.1:{second_port}"})
    harness = Harness(first, fake)
    wait_for(lambda: get(f"http://127.0.0.1:{first_port}/health")[0] == 200, timeout=10.0)
    harness.agent.apply_config(second)
    assert json.loads(get(f"http://127.0.0.1:{second_port}/health")[1])["config"]["generation"] == 2
    harness.inbox.deliver(signal.SIGTERM)
    assert harness.join() == 0
