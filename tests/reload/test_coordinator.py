"""ReloadCoordinator with a real loader: the log line, skipping an unchanged config, the database rule."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from localagent.agent.reload.coordinator import ReloadCoordinator
from localagent.errors import ServiceError
from tests.reload.helpers import RecordingAgent, loader, write_config


def test_one_log_line_lists_every_change(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = tmp_path / "agent.toml"
    write_config(config, tmp_path / "state", ["a"], extra='poll_interval = "10s"\n')
    load = loader(config)
    agent = RecordingAgent(load())
    coordinator = ReloadCoordinator(agent, load)
    write_config(config, tmp_path / "state", ["a", "b"], extra="poll_interval = 5\n")
    with caplog.at_level(logging.INFO, logger="localagent.agent.reload"):
        assert coordinator.reload("SIGHUP")
    lines = [r.getMessage() for r in caplog.records if r.name == "localagent.agent.reload"]
    assert len(lines) == 1
    assert lines[0].startswith("config generation 2: agent.labels ['a'] -> ['a', 'b']; agent.poll_interval 10s -> 5s")


def test_unchanged_config_is_not_applied_again(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    write_config(config, tmp_path / "state", ["a"])
    load = loader(config)
    agent = RecordingAgent(load())
    coordinator = ReloadCoordinator(agent, load)
    assert not coordinator.reload("SIGHUP")
    assert agent.applied == [] and agent.generation == 1


def test_the_same_good_config_after_an_error_clears_it(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    write_config(config, tmp_path / "state", ["a"])
    good = config.read_text()
    load = loader(config)
    agent = RecordingAgent(load())
    coordinator = ReloadCoordinator(agent, load)
    config.write_text(good + "[agent.nope]\n")
    assert not coordinator.reload("SIGHUP")
    assert len(agent.rejected) == 1
    assert not coordinator.reload("file change"), "the same error again"
    assert not coordinator.reload("SIGHUP")
    assert len(agent.rejected) == 1, "is reported once"
    config.write_text(good + "[agent.other]\n")
    assert not coordinator.reload("file change")
    assert len(agent.rejected) == 2, "a different error is news"
    config.write_text(good)
    assert not coordinator.reload("file change")  # the error is cleared, nothing else changed
    assert (agent.cleared, agent.generation, agent.applied) == (1, 1, [])


def test_database_change_under_a_running_embedded_api_is_kept_for_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "agent.toml"
    first_db = f"sqlite:///{tmp_path / 'one.db'}"
    write_config(config, tmp_path / "state", ["a"], extra=f'[server]\ndatabase = "{first_db}"\n')
    load = loader(config)
    agent = RecordingAgent(load())
    coordinator = ReloadCoordinator(agent, load, embedded_running=lambda: True)
    second_db = f"sqlite:///{tmp_path / 'two.db'}"
    write_config(config, tmp_path / "state", ["b"], extra=f'[server]\ndatabase = "{second_db}"\n')
    with caplog.at_level(logging.INFO, logger="localagent.agent.reload"):
        assert coordinator.reload("SIGHUP")
    assert agent.loaded.config.server.database == first_db
    assert agent.loaded.config.agent.labels == ("b",)
    assert any("restart the agent to apply the new value" in r.getMessage() for r in caplog.records)
    # The same file again is no news: no second generation, no second warning.
    assert not coordinator.reload("file change")


def test_moving_the_embedded_api_calls_the_server_hook(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    write_config(config, tmp_path / "state", ["a"], extra='[server]\naddress = "127.0.0.1:4301"\n')
    load = loader(config)
    agent = RecordingAgent(load())
    moves: list[tuple[str, str]] = []
    coordinator = ReloadCoordinator(
        agent,
        load,
        embedded_running=lambda: True,
        on_server_change=lambda old, new: moves.append((old.config.server.address, new.config.server.address)),
    )
    write_config(config, tmp_path / "state", ["a"], extra='[server]\naddress = "127.0.0.1:4302"\n')
    assert coordinator.reload("SIGHUP")
    assert moves == [("127.0.0.1:4301", "127.0.0.1:4302")]


def test_without_a_server_hook_the_embedded_address_and_key_wait_for_a_restart(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    write_config(config, tmp_path / "state", ["a"], extra='[api]\nkey = "k1"\n[server]\naddress = "127.0.0.1:4301"\n')
    load = loader(config)
    agent = RecordingAgent(load())
    coordinator = ReloadCoordinator(agent, load, embedded_running=lambda: True)
    write_config(config, tmp_path / "state", ["b"], extra='[api]\nkey = "k2"\n[server]\naddress = "127.0.0.1:4302"\n')
    assert coordinator.reload("SIGHUP")
    assert agent.loaded.config.server.address == "127.0.0.1:4301"
    assert agent.loaded.api_key == "k1"
    assert agent.loaded.config.agent.labels == ("b",)


def test_a_server_that_cannot_move_keeps_its_address_and_key_and_the_rest_applies(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "agent.toml"
    write_config(config, tmp_path / "state", ["a"], extra='[api]\nkey = "k1"\n[server]\naddress = "127.0.0.1:4301"\n')
    load = loader(config)
    agent = RecordingAgent(load())

    def refuse(old: object, new: object) -> None:
        raise ServiceError("the embedded API cannot listen on 127.0.0.1:4302: the address is already in use")

    coordinator = ReloadCoordinator(agent, load, embedded_running=lambda: True, on_server_change=refuse)
    write_config(config, tmp_path / "state", ["b"], extra='[api]\nkey = "k2"\n[server]\naddress = "127.0.0.1:4302"\n')
    with caplog.at_level(logging.INFO, logger="localagent.agent.reload"):
        assert coordinator.reload("SIGHUP")
    assert agent.loaded.config.server.address == "127.0.0.1:4301"
    assert agent.loaded.api_key == "k1"
    assert agent.loaded.config.agent.labels == ("b",)
    assert any("already in use" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    assert coordinator.reload("SIGHUP"), "the next reload tries to move the server again"


def test_a_sighup_that_finds_nothing_changed_says_so_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = tmp_path / "agent.toml"
    write_config(config, tmp_path / "state", ["a"])
    load = loader(config)
    coordinator = ReloadCoordinator(RecordingAgent(load()), load)
    with caplog.at_level(logging.INFO, logger="localagent.agent.reload"):
        assert not coordinator.reload("SIGHUP")
        assert not coordinator.reload("file change")  # file events that change nothing stay quiet
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len(lines) == 1
    assert lines[0].startswith("config reload (SIGHUP): nothing changed, keeping generation 1 (hash ")


def test_pool_keys_under_a_running_embedded_api_are_kept_for_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "agent.toml"
    write_config(config, tmp_path / "state", ["a"], extra="[server]\ndb_pool_size = 5\n")
    load = loader(config)
    agent = RecordingAgent(load())
    coordinator = ReloadCoordinator(agent, load, embedded_running=lambda: True)
    write_config(
        config, tmp_path / "state", ["b"], extra="[server]\ndb_pool_size = 9\ndb_prepared_statements = false\n"
    )
    with caplog.at_level(logging.INFO, logger="localagent.agent.reload"):
        assert coordinator.reload("SIGHUP")
    server = agent.loaded.config.server
    assert (server.db_pool_size, server.db_prepared_statements) == (5, True)
    assert agent.loaded.config.agent.labels == ("b",)
    warnings = [r.getMessage() for r in caplog.records if "restart the agent" in r.getMessage()]
    assert warnings and "server.db_pool_size 5" in warnings[0] and "server.db_prepared_statements True" in warnings[0]
