"""Reload reporting with a symlink-swapped config directory (``..data``, as git-sync and config maps do).

One bad push: one error line, one reload error. A ``touch`` while in error: nothing new. The last good
content back: the error is cleared (INFO), with no new generation. /health shows the error and stays 200.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reload.agent_process import AgentProcess
from tests.support.wait import wait_for


class ConfigMap:
    """``conf/agent.toml -> ..data/agent.toml``, ``..data -> ..<n>``: each push is a new dir and a link swap."""

    def __init__(self, directory: Path, content: str) -> None:
        self.directory = directory
        self.pushes = 0
        (directory / "agent.toml").unlink()
        self.push(content)
        (directory / "agent.toml").symlink_to("..data/agent.toml")

    def push(self, content: str) -> None:
        self.pushes += 1
        previous = (self.directory / "..data").resolve() if (self.directory / "..data").exists() else None
        version = self.directory / f"..2026_12_01_{self.pushes:04d}"
        version.mkdir()
        (version / "agent.toml").write_text(content)
        (self.directory / "..data_tmp").symlink_to(version.name)
        os.replace(self.directory / "..data_tmp", self.directory / "..data")
        if previous is not None:
            for child in previous.iterdir():
                child.unlink()
            previous.rmdir()


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[AgentProcess, ConfigMap]]:
    process = AgentProcess(tmp_path, labels=["base"])
    config_map = ConfigMap(process.config.parent, process.text(["base"]))
    with process:
        yield process, config_map


def metric(agent: AgentProcess, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.health_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


def health_status(agent: AgentProcess) -> tuple[int, dict[str, object]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{agent.health_port}/health", timeout=5) as reply:
        return reply.status, json.load(reply)


def test_one_bad_push_is_reported_once_and_the_good_content_back_clears_it(
    agent: tuple[AgentProcess, ConfigMap],
) -> None:
    process, config_map = agent
    good = process.text(["base"])
    config_map.push(good.replace('labels = ["base"]', "labels = = ["))
    wait_for(lambda: process.health()["config"]["error"] is not None, what="/health to report the error")
    status, body = health_status(process)
    assert status == 200, "a config error alone does not make the agent unhealthy"
    assert body["status"] == "config error"
    assert "agent.toml:" in str(body["config"]["error"])  # type: ignore[index]
    wait_for(lambda: metric(process, "localagent_reload_errors_total") >= 1, what="the reload error count")
    time.sleep(1.0)  # the watcher re-plans after the link swap and looks once more: let it
    (process.config.parent / "..data" / "agent.toml").touch()  # a touch while in error
    time.sleep(1.5)  # far more than the watcher's quiet period: a second report would be there by now
    assert process.log().count("config reload refused") == 1, process.log()
    assert metric(process, "localagent_reload_errors_total") == 1

    config_map.push(good)  # the last good content is back
    wait_for(lambda: process.health()["config"]["error"] is None, what="the error to clear")
    status, body = health_status(process)
    assert (status, body["status"]) == (200, "ok")
    assert body["config"]["generation"] == 1, "nothing effective changed: no new generation"  # type: ignore[index]
    assert "the config error is cleared; the config in force is unchanged (generation 1" in process.log()
    assert metric(process, "localagent_reloads_total") == 0
    assert process.log().count("config reload refused") == 1
