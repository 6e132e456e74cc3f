"""The fleet's processes: ``localagent server`` on this host's side of the veths, ``localagent run`` inside
the namespaces. Every process is a real child of the caller, stopped by its pid.

    fleet = Fleet(net, workdir, database_url, key="k")
    a = fleet.start_server("a", net.hosts[0], agent_timeout="60s")
    fleet.start_agent(net.hosts[1], "h1-a0", urls=[a.url], labels=["host-1"])
    fleet.close()                           # agents first (TERM, then KILL), then servers
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import requests

from localagent.api.client import ApiClient
from localagent.api.models import FlowRun
from tests.fleet.netns import IP, Host, Network

T = TypeVar("T")

LOCALAGENT = shutil.which("localagent") or str(Path(sys.executable).with_name("localagent"))


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` from /proc (0.0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


class Child:
    """A child process with its output in one file (never a pipe that could fill up)."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.argv = argv
        self.log_path = log
        self.popen = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        with open(self.log_path, "ab") as log:
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            return subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL, and reap it."""
        if self.running():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(30)

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""
        if self.running():
            self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        self.kill()


class Server(Child):
    """``localagent server`` bound to one host-side address (never 0.0.0.0), with an API key."""

    def __init__(self, workdir: Path, name: str, address: str, database_url: str, key: str, *extra: str) -> None:
        self.name = name
        self.url = f"http://{address}:{free_port(address)}"
        argv = [LOCALAGENT, "server", "--address", self.url.removeprefix("http://"), "--database", database_url]
        super().__init__([*argv, "--api-key", key, "--log-level", "warning", *extra], workdir / f"server-{name}.log")

    def wait_serving(self, timeout: float = 180.0) -> None:
        """Until /api/health answers (a start can take over a minute on a loaded 2-core machine)."""
        deadline = time.monotonic() + timeout
        http = requests.Session()
        http.trust_env = False
        while True:
            try:
                http.get(self.url + "/api/health", timeout=2).raise_for_status()
                return
            except requests.RequestException:
                if not self.running() or time.monotonic() > deadline:
                    raise AssertionError(f"server {self.name} did not serve on {self.url}:\n{self.log}") from None
                time.sleep(0.1)

    def restart(self) -> None:
        """Start it again with the same address and database (after :meth:`kill`)."""
        self.popen = self._spawn()
        self.wait_serving()


class Agent(Child):
    """``ip netns exec NS localagent run -c NAME.toml``: an agent inside a host's namespace."""

    def __init__(self, net: Network, host: Host, workdir: Path, name: str, sections: dict[str, dict[str, Any]]) -> None:
        self.name = name
        self.host = host
        lines: list[str] = []
        for section, values in sections.items():
            lines.append(f"[{section}]")
            lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
        self.config = workdir / f"{name}.toml"
        self.config.write_text("\n".join(lines) + "\n")
        super().__init__(net.exec_argv(host, [LOCALAGENT, "run", "-c", str(self.config)]), workdir / f"{name}.log")


class Fleet:
    """The servers and agents of one test (or benchmark); ``close()`` stops every one of them by pid."""

    def __init__(self, net: Network, workdir: Path, database_url: str, key: str) -> None:
        self.net = net
        self.workdir = workdir
        self.database_url = database_url
        self.key = key
        self.servers: list[Server] = []
        self.agents: list[Agent] = []

    def start_server(self, name: str, host: Host, *extra: str) -> Server:
        server = Server(self.workdir, name, host.host_ip, self.database_url, self.key, *extra)
        self.servers.append(server)  # before the wait: a failed or interrupted start is still stopped
        server.wait_serving()
        return server

    def start_agent(
        self,
        host: Host,
        name: str,
        urls: list[str],
        *,
        labels: list[str] | None = None,
        slots: int = 4,
        poll_interval: str = "2s",
        extra: dict[str, dict[str, Any]] | None = None,
    ) -> Agent:
        """An agent in ``host``'s namespace; ``urls`` is one API url, or several (failover) as a list."""
        sections: dict[str, dict[str, Any]] = {
            "agent": {
                "name": name,
                "labels": labels or [],
                "hostname_label": False,  # the namespaces share this host's name
                "run_unlabeled": True,
                "max_concurrent_runs": slots,
                "poll_interval": poll_interval,
                "state_dir": str(self.workdir / f"{name}-state"),
            },
            "api": {"url": urls[0] if len(urls) == 1 else urls, "key": self.key},
            "runs": {"drain_timeout": "3s", "stop_grace": "1s"},
        }
        for section, values in (extra or {}).items():
            sections.setdefault(section, {}).update(values)
        agent = Agent(self.net, host, self.workdir, name, sections)
        self.agents.append(agent)
        return agent

    def close(self) -> None:
        for agent in self.agents:
            if agent.running():
                agent.popen.send_signal(signal.SIGTERM)
        for agent in self.agents:
            agent.stop()
        for server in self.servers:
            server.stop()


def poll_until(condition: Callable[[], T], *, timeout: float, what: str, every: float = 0.5) -> T:
    """``condition()`` once truthy, asked every ``every`` seconds (the API and the machine are shared with
    the fleet under test: no 50-a-second polling); AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)
    return value


def all_runs(api: ApiClient) -> list[FlowRun]:
    """Every run the API has, newest first (pages of 1,000)."""
    runs: list[FlowRun] = []
    while page := api.list_runs(limit=1000, offset=len(runs)):
        runs.extend(page)
    return runs


def executions(path: Path) -> tuple[Counter[str], dict[str, set[str]]]:
    """From the lines ``RUN_ID PID NETNS`` the fleet's flows append: executions per run, hosts per run."""
    counts: Counter[str] = Counter()
    hosts: dict[str, set[str]] = {}
    text = path.read_text() if path.exists() else ""
    for line in text.splitlines():
        run_id, _pid, *netns = line.split()
        counts[run_id] += 1
        hosts.setdefault(run_id, set()).add(netns[0] if netns else "?")
    return counts, hosts


def mark_command(ledger: Path, sleep: float = 0.0) -> list[str]:
    """A flow's argv: append ``RUN_ID PID NETNS`` to ``ledger`` (one write, O_APPEND), then sleep."""
    script = f'echo "$LOCALAGENT_FLOW_RUN_ID $$ $({IP} netns identify)" >> {ledger}'
    if sleep:
        script += f"; exec sleep {sleep:g}"
    return ["/bin/sh", "-c", script]
