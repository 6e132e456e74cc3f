"""Fakes for the agent loop's seams: an API client, a run execution and the config loader."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from localagent.api.models import (
    Agent,
    AgentRegister,
    ClaimedRun,
    ClaimReply,
    ClaimRequest,
    Flow,
    FlowRun,
    Heartbeat,
    HeartbeatReply,
    StateName,
    StateUpdate,
)
from localagent.api.port import Capabilities
from localagent.config import LoadedConfig
from localagent.config.model import AgentConfig
from localagent.errors import ApiNotFound, ApiUnavailable

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)


def loaded_config(tmp_path: Path, **sections: dict[str, Any]) -> LoadedConfig:
    data: dict[str, Any] = {"agent": {"state_dir": str(tmp_path / "state"), "poll_interval": 0.2, "name": "a1"}}
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    data["api"] = {"url": "http://api.test", **data.get("api", {})}
    config = AgentConfig.model_validate(data)
    return LoadedConfig(
        config=config, origins={}, files=(tmp_path / "agent.toml",), hash=str(hash(str(data))), api_key=None
    )


def claimed_run(run_id: str, flow: str = "hello") -> ClaimedRun:
    run = FlowRun(
        id=run_id,
        name=f"name-{run_id}",
        flow=flow,
        flow_version=1,
        parameters={},
        labels=[],
        run_config_type="universal",
        scheduled_start=NOW,
        state=StateName.SUBMITTED,
        created=NOW,
        updated=NOW,
    )
    return ClaimedRun(run=run, flow=Flow(name=flow, command="true", version=1, created=NOW), token=f"token-{run_id}")


class FakeServer:
    """The API's state as the fake clients see it: runs waiting, requests seen, faults to inject."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.waiting: list[ClaimedRun] = []
        self.claims: list[ClaimRequest] = []
        self.registrations: list[AgentRegister] = []
        self.heartbeats: list[Heartbeat] = []
        self.beats_to: list[tuple[str, str, Heartbeat]] = []  # (url, agent id, heartbeat)
        self.states: list[tuple[str, StateUpdate, str | None]] = []
        self.disconnects: list[tuple[str, str]] = []  # (url, agent id)
        self.cancels: list[str] = []
        self.down = False
        self.refused: list[str] = []  # the calls made while down, by name (each one a try of the agent)
        self.forget_agent = False
        self.agent_seq = 0
        self.clients: list[FakeClient] = []

    def add_runs(self, *runs: ClaimedRun) -> None:
        with self.changed:
            self.waiting.extend(runs)
            self.changed.notify_all()

    def cancel(self, run_id: str) -> None:
        with self.changed:
            self.cancels.append(run_id)
            self.changed.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        with self.changed:
            if not self.changed.wait_for(predicate, timeout):
                raise AssertionError("condition not reached in time")

    def client_factory(self, url: str, key: str | None, timeout: float) -> FakeClient:
        client = FakeClient(self, url, key)
        with self.lock:
            self.clients.append(client)
        return client


class FakeClient:
    def __init__(self, server: FakeServer, url: str, key: str | None) -> None:
        self.server = server
        self.url = url
        self.key = key
        self.closed = False

    def _check(self, call: str = "") -> None:
        if self.server.down:
            with self.server.lock:
                self.server.refused.append(call)
            raise ApiUnavailable(f"cannot reach {self.url}")

    def register_agent(self, request: AgentRegister) -> Agent:
        self._check()
        with self.server.changed:
            self.server.registrations.append(request)
            self.server.agent_seq += 1
            self.server.forget_agent = False
            self.server.changed.notify_all()
            return Agent(
                id=f"agent-{self.server.agent_seq}",
                name=request.name,
                labels=request.labels,
                run_unlabeled=request.run_unlabeled,
                run_config_types=request.run_config_types,
                hostname=request.hostname,
                version=request.version,
                config_generation=request.config_generation,
                config_hash=request.config_hash,
                config_error=request.config_error,
                registered=NOW,
                last_heartbeat=NOW,
            )

    def heartbeat(self, agent_id: str, beat: Heartbeat) -> HeartbeatReply:
        self._check()
        with self.server.changed:
            if self.server.forget_agent:
                raise ApiNotFound(404, f"agent {agent_id} not found")
            self.server.heartbeats.append(beat)
            self.server.beats_to.append((self.url, agent_id, beat))
            self.server.changed.notify_all()
            return HeartbeatReply(cancel=list(self.server.cancels))

    def claim(self, agent_id: str, request: ClaimRequest) -> ClaimReply:
        self._check("claim")
        with self.server.changed:
            if self.server.forget_agent:
                raise ApiNotFound(404, f"agent {agent_id} not found")
            self.server.claims.append(request)
            self.server.changed.notify_all()
            if (not self.server.waiting or request.slots == 0) and not self.server.cancels:
                self.server.changed.wait(timeout=min(request.wait, 0.05))
            taken = self.server.waiting[: request.slots]
            del self.server.waiting[: request.slots]
            cancels = list(self.server.cancels)
            self.server.changed.notify_all()
        return ClaimReply(runs=taken, cancel=cancels)

    def disconnect_agent(self, agent_id: str) -> None:
        self._check()
        with self.server.changed:
            self.server.disconnects.append((self.url, agent_id))
            self.server.changed.notify_all()

    def set_state(self, run_id: str, update: StateUpdate) -> None:
        self._check()
        with self.server.changed:
            self.server.states.append((run_id, update, self.key))
            self.server.changed.notify_all()

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(state_batches=False, output_rows=False)

    def scoped(self, token: str) -> FakeClient:
        return self.server.client_factory(self.url, token, 0.0)

    def close(self) -> None:
        self.closed = True


class FakeExecution:
    """Stands in for RunExecution: finishes when told to (or at once with ``auto_finish``)."""

    instances: list[FakeExecution]

    def __init__(
        self,
        claimed: ClaimedRun,
        config: AgentConfig,
        api: Any,
        *,
        reaper: Any,
        console: Any,
        metrics: Any = None,
        on_finished: Callable[[Any], None] | None = None,
        state_batcher: Any = None,
        pending: Any = None,
        origin: Any = None,
        auto_finish: StateName | None = None,
        log: list[FakeExecution] | None = None,
    ) -> None:
        self.claimed = claimed
        self.config = config
        self.api = api
        self.run_id = claimed.run.id
        self.done = threading.Event()
        self.final_state: StateName | None = None
        self.on_finished = on_finished
        self.auto_finish = auto_finish
        self.started = False
        self.cancel_messages: list[str] = []
        self.shutdowns: list[tuple[str, bool]] = []
        if log is not None:
            log.append(self)

    def start(self) -> None:
        self.started = True
        if self.auto_finish is not None:
            threading.Thread(target=self.finish, args=(self.auto_finish,), daemon=True).start()

    def finish(self, state: StateName) -> None:
        if self.done.is_set():
            return
        self.final_state = state
        self.done.set()
        if self.on_finished is not None:
            self.on_finished(self)

    def cancel(self, message: str = "cancelled on request") -> None:
        self.cancel_messages.append(message)
        self.finish(StateName.CANCELLED)

    def shutdown(self, message: str = "agent shut down", *, immediate: bool = False) -> None:
        self.shutdowns.append((message, immediate))

    def stop_api_lost(self, message: str) -> None:
        self.cancel_messages.append(message)
        self.finish(StateName.CRASHED)


class FakeConsole:
    enabled = False
