"""``api.url`` as a list of servers: what is accepted, what is refused (with the file, line and key), and the
ways to give it (file, environment, ``--api`` repeated or with commas); ``[server]`` pool keys."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from localagent.config import FlagOverrides, load_config
from localagent.errors import ConfigError
from tests.config.conftest import WriteToml
from tests.e2e.support import LOCALAGENT


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config([path], None, {})
    return [str(problem) for problem in caught.value.problems]


def test_a_list_of_urls_is_kept_in_order_without_trailing_slashes(write_toml: WriteToml) -> None:
    path = write_toml("agent.toml", '[api]\nurl = ["http://10.0.0.2:4300/", "https://b.example"]\n')
    api = load_config([path], None, {}).config.api
    assert api.url == ("http://10.0.0.2:4300", "https://b.example")
    assert api.urls == api.url
    assert api.failback_interval == 30.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[]", "the list of URLs is empty: give at least one http(s)://host:port URL"),
        ('["http://a:1", "embedded"]', "'embedded' cannot be in a list of URLs"),
        ('["http://a:1", "http://a:1/"]', "'http://a:1' is listed twice"),
        ('["http://a:1", "ftp://b"]', "expected an http(s)://host:port URL in the list, got 'ftp://b'"),
        ('["http://a:1", 4300]', "each URL in the list must be a string, got 4300"),
        ("4300", "expected 'embedded', an http(s)://host:port URL or a list of such URLs, got 4300"),
    ],
)
def test_a_bad_list_is_refused_naming_the_key(write_toml: WriteToml, value: str, message: str) -> None:
    path = write_toml("agent.toml", f"[api]\nurl = {value}\n")
    found = problems(path)
    assert len(found) == 1 and found[0].startswith(f"{path}:2: api.url: {message}"), found


def test_a_prefect_api_takes_one_url(write_toml: WriteToml) -> None:
    path = write_toml(
        "agent.toml",
        '[api]\nkind = "prefect"\nurl = ["http://a:4200/api", "http://b:4200/api"]\n[prefect]\nwork_pool = "p"\n',
    )
    assert problems(path) == [
        f"{path}:3: api.url: a list of URLs is only for api.kind = 'localagent'; a Prefect API takes one URL"
    ]


def test_the_environment_sets_a_list() -> None:
    environ = {"LOCALAGENT_API__URL": '["http://a:4300", "http://b:4300"]'}
    assert load_config([], None, environ).config.api.url == ("http://a:4300", "http://b:4300")


def test_api_flag_repeated_or_with_commas_sets_a_list(tmp_path: Path) -> None:
    def shown(*flags: str) -> str:
        done = subprocess.run(
            [LOCALAGENT, "config", "show", *flags], capture_output=True, text=True, cwd=tmp_path, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return next(line for line in done.stdout.splitlines() if line.startswith("url = "))

    assert shown("--api", "http://a:1", "--api", "http://b:2") == 'url = ["http://a:1", "http://b:2"]'
    assert shown("--api", "http://a:1,http://b:2") == 'url = ["http://a:1", "http://b:2"]'
    assert shown("--api", "http://a:1") == 'url = "http://a:1"'


def test_config_validate_reports_a_bad_list(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[api]\nurl = ["http://a:1", "embedded"]\n')
    done = subprocess.run(
        [LOCALAGENT, "config", "validate", "-c", str(config)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert f"{config}:2: api.url: 'embedded' cannot be in a list of URLs" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_server_pool_keys(write_toml: WriteToml) -> None:
    path = write_toml("agent.toml", "[server]\ndb_pool_size = 3\ndb_max_overflow = 0\ndb_prepared_statements = false\n")
    server = load_config([path], FlagOverrides(), {}).config.server
    assert (server.db_pool_size, server.db_max_overflow, server.db_prepared_statements) == (3, 0, False)
    bad = write_toml("bad.toml", "[server]\ndb_pool_size = 0\ndb_max_overflow = -1\n")
    assert problems(bad) == [
        f"{bad}:2: server.db_pool_size: must be >= 1, got 0",
        f"{bad}:3: server.db_max_overflow: must be >= 0, got -1",
    ]
