"""Helpers for end-to-end tests: the installed ``localagent`` binary as agents and servers, on free ports."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from localagent.api.client import ApiClient
from tests.support.runs import wait_state
from tests.support.wait import wait_for

__all__ = ["wait_for", "wait_state"]  # re-exported for the e2e tests

LOCALAGENT = shutil.which("localagent") or str(Path(sys.executable).with_name("localagent"))


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table
        return "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
    path.write_text("\n".join(lines) + "\n")
    return path


class Process:
    """A ``localagent`` subprocess with stdout and stderr in files (never a pipe that could fill up)."""

    def __init__(self, args: Iterable[str], workdir: Path, name: str) -> None:
        self.stdout_path = workdir / f"{name}.stdout"
        self.stderr_path = workdir / f"{name}.stderr"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            self.popen = subprocess.Popen([LOCALAGENT, *args], stdout=out, stderr=err, cwd=workdir, env=env)

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"process did not exit in {timeout}s; stderr:\n{self.stderr}") from None

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)


class Agent(Process):
    """``localagent run -c <tmp toml>`` with state_dir in the test's tmp dir."""

    def __init__(self, workdir: Path, name: str, sections: dict[str, dict[str, Any]]) -> None:
        sections = {key: dict(value) for key, value in sections.items()}
        agent = sections.setdefault("agent", {})
        agent.setdefault("name", name)
        agent.setdefault("state_dir", str(workdir / f"{name}-state"))
        agent.setdefault("poll_interval", "0.5s")
        agent.setdefault("hostname_label", False)
        self.name = agent["name"]
        config = write_config(workdir / f"{name}.toml", sections)
        super().__init__(["run", "-c", str(config)], workdir, name)

    def wait_registered(self, api: ApiClient, timeout: float = 30.0) -> None:
        def registered() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"agent exited with {self.popen.returncode}:\n{self.stderr}")
            try:
                return any(
                    agent.name == self.name and not agent.lost and agent.stopped is None for agent in api.list_agents()
                )
            except Exception:
                return False

        wait_for(registered, timeout=timeout, what=f"agent {self.name} to register")
