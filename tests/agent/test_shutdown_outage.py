"""A shutdown while the API hangs ends within the delivery grace: no retry sleeps or nests past it."""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

from localagent.agent.metrics import AgentMetrics
from localagent.agent.run.console import ConsolePrinter
from localagent.agent.run.reaper import ChildReaper
from localagent.agent.signals import SignalInbox
from localagent.agent.supervisor import Agent
from localagent.api.client import ApiClient
from localagent.api.models import FlowRunCreate, FlowSpec, StateName
from localagent.config import LoadedConfig
from localagent.config.model import AgentConfig
from localagent.runtime.backends import http_client
from tests.conftest import MakeApiServer
from tests.support.wait import wait_for

API_TIMEOUT = 3.0
GRACE = 1.0


def test_a_shutdown_during_an_api_that_hangs_ends_within_its_delivery_grace(
    make_api_server: MakeApiServer, tmp_path: Path
) -> None:
    server = make_api_server()
    port = int(server.url.rsplit(":", 1)[1])
    config = AgentConfig.model_validate(
        {
            "agent": {"state_dir": str(tmp_path / "state"), "poll_interval": 0.5, "run_unlabeled": True},
            "api": {"url": server.url, "timeout": API_TIMEOUT},
            "runs": {"drain_timeout": 0.2, "stop_grace": 0.2},
            "logs": {"level": "WARNING"},
        }
    )
    loaded = LoadedConfig(config=config, origins={}, files=(), hash="h", api_key=None)
    reaper = ChildReaper()
    reaper.start()
    inbox = SignalInbox()
    agent = Agent(
        loaded,
        reaper=reaper,
        console=ConsolePrinter(enabled=False),
        metrics=AgentMetrics(),
        inbox=inbox,
        client_factory=http_client,
        delivery_grace=GRACE,
    )
    exit_codes: list[int] = []
    thread = threading.Thread(target=lambda: exit_codes.append(agent.run()), daemon=True)
    thread.start()
    black_hole = socket.socket()
    try:
        with ApiClient(server.url) as admin:
            admin.register_flow(FlowSpec(name="long", command=["sleep", "60"]))
            run = admin.create_run(FlowRunCreate(flow="long"))
            wait_for(lambda: admin.get_run(run.id).state == StateName.RUNNING, what="the run to start")
        # The API now hangs: its port accepts connections that are never answered, so every request the
        # agent makes waits its full api.timeout. Nested retries (a client retrying inside a retrying
        # caller) would keep the shutdown waiting for several timeouts after the grace.
        server.stop()
        black_hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        black_hole.bind(("127.0.0.1", port))
        black_hole.listen(64)
        began = time.monotonic()
        inbox.deliver(signal.SIGTERM)
        thread.join(60)
        returned = time.monotonic()
        wait_for(lambda: not _delivery_threads(), timeout=60, what="every delivery to end")
        lingered = time.monotonic() - returned
        took = returned - began
    finally:
        black_hole.close()
        reaper.stop()
        inbox.close()
    assert exit_codes == [128 + signal.SIGTERM]  # the run outlived drain_timeout and was stopped
    # Drain (0.2 s), the stop (0.2 s grace), the delivery grace, one request already on the wire (at most
    # api.timeout), the threads' joins: well under a second retry of a hanging request.
    assert took < 0.2 + 0.2 + GRACE + API_TIMEOUT + 3.0, took
    # Once the agent gave up, what is left is at most the one request on the wire when it did.
    assert lingered < API_TIMEOUT + 1.0, lingered


def _delivery_threads() -> list[str]:
    prefixes = ("run-", "deliver-", "ship-", "running-", "state-batch")
    return [thread.name for thread in threading.enumerate() if thread.name.startswith(prefixes)]
