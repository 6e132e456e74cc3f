"""A real `localagent run` child process with the embedded API and /health on free loopback ports.

Used by the end-to-end reload tests and by benchmarks/reload_bench.py::

    with AgentProcess(tmp_path, labels=["base"]) as agent:
        agent.save(labels=["base", "gpu"])       # atomic-rename save of agent.toml
        agent.health()["config"]["generation"]
        agent.api_port = free_port(); agent.save(labels=["base"])   # move the embedded API

``api="http://..."`` points the agent at a separate API instead; ``api_key`` writes ``api.key``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from localagent.api.client import ApiClient
from tests.ports import free_ports


def localagent_command() -> list[str]:
    found = shutil.which("localagent")
    return [found] if found else [sys.executable, "-m", "localagent"]


class AgentProcess:
    """``localagent run -c <tmp>/conf/agent.toml`` in a child process; ``stop()`` sends SIGTERM and waits."""

    def __init__(
        self, root: Path, *, labels: list[str], poll_interval: str = "1s", extra: str = "", api: str = "embedded"
    ) -> None:
        self.root = root
        self.config = root / "conf" / "agent.toml"
        self.config.parent.mkdir(parents=True, exist_ok=True)
        self.api_port, self.health_port = free_ports(2)
        self.poll_interval = poll_interval
        self.extra = extra
        self.api = api  # "embedded", or the url of a separate API
        self.api_key: str | None = None  # written as api.key when set
        self.save(labels=labels, atomic=False)
        self.log_path = root / "agent.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}" if self.api == "embedded" else self.api

    def text(self, labels: list[str], extra: str | None = None) -> str:
        quoted = ", ".join(json.dumps(label) for label in labels)
        key = f'key = "{self.api_key}"\n' if self.api_key else ""
        server = f'[server]\naddress = "127.0.0.1:{self.api_port}"\n' if self.api == "embedded" else ""
        return (
            f'[agent]\nname = "reload-test"\nlabels = [{quoted}]\nhostname_label = false\n'
            f'poll_interval = "{self.poll_interval}"\nstate_dir = "{self.root / "state"}"\n'
            f'[api]\nurl = "{self.api}"\n{key}{server}'
            f'[health]\naddress = "127.0.0.1:{self.health_port}"\n'
            f"{self.extra if extra is None else extra}"
        )

    def save(self, *, labels: list[str], extra: str | None = None, atomic: bool = True) -> None:
        """Write agent.toml; by default the way editors save: a temporary file renamed over it."""
        content = self.text(labels, extra)
        if not atomic:
            self.config.write_text(content, encoding="utf-8")
            return
        temporary = self.config.with_name(".agent.toml.swp")
        temporary.write_text(content, encoding="utf-8")
        os.replace(temporary, self.config)

    def start(self) -> AgentProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALAGENT_")}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*localagent_command(), "run", "-c", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the agent exited with {self.process.returncode}:\n{self.log()}")
            try:
                if self.health().get("last_poll"):
                    return self
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"the agent did not become healthy:\n{self.log()}")

    def health(self) -> dict[str, Any]:
        """The /health body (also when it answers 503)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/health", timeout=5) as reply:
                body: dict[str, Any] = json.load(reply)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        return body

    def polls(self) -> float:
        """Claim requests answered so far (``localagent_polls_total`` on /metrics, ok and error)."""
        url = f"http://127.0.0.1:{self.health_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            text = reply.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("localagent_polls_total")
        )

    def client(self) -> ApiClient:
        return ApiClient(self.api_url, key=self.api_key, timeout=10.0)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def __enter__(self) -> AgentProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
