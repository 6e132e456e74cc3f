"""A thin HTTP helper for the server tests (the real client lives in localagent.api.client)."""

from __future__ import annotations

from typing import Any

import requests

from localagent.server.runner import ServerThread


class Http:
    """``Http(server, key="k").post("/api/flows", json={...})`` with the key sent as a Bearer token."""

    def __init__(self, server: ServerThread, key: str | None = None) -> None:
        self.url = server.url
        self.session = requests.Session()
        if key is not None:
            self.session.headers["Authorization"] = f"Bearer {key}"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.get(self.url + path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.post(self.url + path, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = getattr(self, method)(path, **kwargs)
        assert reply.status_code < 300, (reply.status_code, reply.text)
        return reply.json()

    # shortcuts for the common set-up steps
    def flow(self, name: str = "hello", **spec: Any) -> dict[str, Any]:
        return self.ok("post", "/api/flows", json={"name": name, "command": "echo hi", **spec})  # type: ignore[no-any-return]

    def run(self, flow: str = "hello", **body: Any) -> dict[str, Any]:
        return self.ok("post", "/api/flow_runs", json={"flow": flow, **body})  # type: ignore[no-any-return]

    def agent(self, name: str = "agent-1", **body: Any) -> dict[str, Any]:
        return self.ok("post", "/api/agents", json={"name": name, **body})  # type: ignore[no-any-return]

    def claim(self, agent_id: str, **body: Any) -> dict[str, Any]:
        body.setdefault("slots", 1)
        return self.ok("post", f"/api/agents/{agent_id}/claim", json=body)  # type: ignore[no-any-return]

    def state(self, run_id: str, state: str, **body: Any) -> requests.Response:
        return self.post(f"/api/flow_runs/{run_id}/state", json={"state": state, **body})

    def claimed_runs(self, count: int, **flow: Any) -> list[dict[str, Any]]:
        """A flow, ``count`` runs of it, and all of them claimed by a new agent (each with its token)."""
        self.flow(**flow)
        for _ in range(count):
            self.run()
        agent = self.agent()
        runs: list[dict[str, Any]] = self.claim(agent["id"], slots=count, run_unlabeled=True)["runs"]
        assert len(runs) == count
        return runs

    def states(self, run_id: str) -> list[str]:
        return [record["state"] for record in self.ok("get", f"/api/flow_runs/{run_id}")["history"]]
