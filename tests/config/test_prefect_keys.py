"""``api.kind = "prefect"`` needs a url and a pool; errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from localagent.config import load_config
from localagent.errors import ConfigError


def _load(tmp_path: Path, text: str) -> str:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config([path], environ={"HOME": str(tmp_path)})
    return str(caught.value)


def test_prefect_kind_needs_a_url_and_a_pool(tmp_path: Path) -> None:
    assert "api.url: api.kind is 'prefect': set api.url to the Prefect API" in _load(
        tmp_path, '[api]\nkind = "prefect"\n[prefect]\nwork_pool = "p"\n'
    )
    assert "prefect: api.kind is 'prefect': set prefect.work_pool" in _load(
        tmp_path, '[api]\nkind = "prefect"\nurl = "http://127.0.0.1:4200/api"\n'
    )


def test_bad_prefect_keys_are_named(tmp_path: Path) -> None:
    message = _load(tmp_path, '[api]\nkind = "other"\n[prefect]\nwork_queues = [""]\ncommand = []\n')
    assert "agent.toml:2: api.kind" in message
    assert "prefect.work_queues: work queue names must not be empty strings" in message
    assert "prefect.command" in message


def test_a_valid_prefect_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[api]\nkind = "prefect"\nurl = "http://127.0.0.1:4200"\n[prefect]\nwork_pool = "local"\n')
    config = load_config([path], environ={"HOME": str(tmp_path)}).config
    assert (config.api.kind, config.prefect.work_pool, config.prefect.work_queues) == ("prefect", "local", ())
