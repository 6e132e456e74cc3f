"""Every value the model accepts works; what it refuses is refused with the limit, the file and the line."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

from localagent.api.client import ApiClient
from localagent.api.models import ClaimRequest
from localagent.config import LoadedConfig, load_config
from localagent.config.guards import MAX_DEPTH, MAX_FILE_BYTES
from localagent.config.model import (
    MAX_API_TIMEOUT,
    MAX_CONCURRENT_RUNS,
    MAX_DRAIN_TIMEOUT,
    MAX_POLL_INTERVAL,
    MAX_STOP_GRACE,
)
from localagent.errors import ConfigError
from tests.config.conftest import WriteToml
from tests.support.agent_harness import Harness
from tests.support.fake_orchestrator import FakeServer, loaded_config


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config([path], environ={"HOME": str(path.parent)})
    return [str(problem).replace(f"{path.parent}/", "") for problem in caught.value.problems]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[agent]\nmax_concurrent_runs = 1001\n", "agent.toml:2: agent.max_concurrent_runs: must be <= 1000, got 1001"),
        ("[api]\ntimeout = 1e300\n", "agent.toml:2: api.timeout: must be <= 1h, got 1e+300s"),
        ('[agent]\npoll_interval = "6m"\n', "agent.toml:2: agent.poll_interval: must be <= 5m, got 6m"),
        ('[runs]\nstop_grace = "2d"\n', "agent.toml:2: runs.stop_grace: must be <= 1d, got 2d"),
        ('[runs]\ndrain_timeout = "8d"\n', "agent.toml:2: runs.drain_timeout: must be <= 7d, got 8d"),
        ("[agent]\nmax_polls = 10000000000\n", "agent.toml:2: agent.max_polls: must be <= 1000000000, got 10000000000"),
        ('[logs]\nmax_run_output = "2TiB"\n', "agent.toml:2: logs.max_run_output: must be <= 1024GiB, got 2048GiB"),
        (f'[agent]\nname = "{"n" * 201}"\n', "agent.toml:2: agent.name: string should have at most 200 characters"),
        ("[runs]\npoll = 1\n[agent]\npoll_interval = " + "9" * 400 + "\n", "agent.toml:4: agent.poll_interval: "),
    ],
)
def test_values_past_what_the_agent_can_use_are_refused_with_the_limit(
    write_toml: WriteToml, text: str, expected: str
) -> None:
    problems = _problems(write_toml("agent.toml", text))
    assert any(problem.startswith(expected) for problem in problems), problems


def test_the_largest_accepted_values_are_usable_by_the_code_that_reads_them() -> None:
    # A claim can ask for every slot and wait the longest poll interval (this failed for 1001 before).
    ClaimRequest(slots=MAX_CONCURRENT_RUNS, wait=MAX_POLL_INTERVAL)
    ApiClient("http://127.0.0.1:9", key=None, timeout=MAX_API_TIMEOUT).close()
    for seconds in (MAX_API_TIMEOUT + MAX_POLL_INTERVAL, MAX_STOP_GRACE, MAX_DRAIN_TIMEOUT):
        assert seconds <= threading.TIMEOUT_MAX  # every wait on them is a valid Event/Condition timeout


def test_an_agent_at_the_largest_cap_and_timeout_claims_and_stops_cleanly(tmp_path: Path) -> None:
    fake = FakeServer()
    loaded = loaded_config(tmp_path, agent={"max_concurrent_runs": MAX_CONCURRENT_RUNS}, api={"timeout": 3600})
    harness = Harness(loaded, fake)
    fake.wait_for(lambda: len(fake.claims) >= 2)
    assert fake.claims[0].slots == MAX_CONCURRENT_RUNS
    harness.inbox.deliver(signal.SIGTERM)
    assert harness.join() == 0


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("[agent]\nx = " + "[" * 500 + "]" * 500 + "\n", 2, f"nested more than {MAX_DEPTH} levels deep"),
        ("a = 1\n\nb = {c = " + "{d = " * 600 + "1" + "}" * 601 + "\n", 3, f"nested more than {MAX_DEPTH} levels"),
        ("[agent]\n" + ".".join(["k"] * 2000) + " = 1\n", 2, f"keys nested more than {MAX_DEPTH} levels deep"),
        ("[agent]\nname = 'a'\nmax_polls = " + "9" * 5000 + "\n", 3, "a number longer than 1000 characters"),
        ('name = "' + "[" * 600 + '"\nx = ' + "1" * 1001, 2, "a number longer than 1000 characters"),
    ],
)
def test_documents_too_deep_or_numbers_too_long_name_the_line(
    write_toml: WriteToml, text: str, line: int, reason: str
) -> None:
    problems = _problems(write_toml("agent.toml", text))
    assert len(problems) == 1
    assert problems[0].startswith(f"agent.toml:{line}: ") and reason in problems[0], problems


def test_a_file_over_the_size_limit_is_refused_at_the_line_that_crosses_it(write_toml: WriteToml) -> None:
    text = "[runs.env]\n" + "".join(f'K{index} = "v"\n' for index in range(100_000))
    problems = _problems(write_toml("agent.toml", text))
    assert len(text) > MAX_FILE_BYTES
    assert len(problems) == 1 and "the limit is 1,048,576 bytes (1 MiB)" in problems[0]
    crossing = text.encode()[:MAX_FILE_BYTES].count(b"\n") + 1
    assert problems[0].startswith(f"agent.toml:{crossing}: ")


def test_many_keys_under_the_limit_load(write_toml: WriteToml) -> None:
    text = "[runs.env]\n" + "".join(f'K{index} = "v"\n' for index in range(50_000))
    loaded = load_config([write_toml("agent.toml", text)], environ={"HOME": "/nonexistent"})
    assert len(loaded.config.runs.env) == 50_000
    assert loaded.origins["runs.env.K49999"].endswith("agent.toml:50001")


def test_many_problems_list_the_first_hundred_and_count_the_rest(write_toml: WriteToml) -> None:
    text = "[agent]\n" + "".join(f"unknown{index} = 1\n" for index in range(5000))
    with pytest.raises(ConfigError) as caught:
        load_config([write_toml("agent.toml", text)], environ={"HOME": "/nonexistent"})
    assert caught.value.count == 5000 and len(caught.value.problems) == 100
    assert str(caught.value).endswith("... and 4,900 more problems (the first 100 are shown)")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[agent]\nname = "a\\u0000b"\n', "agent.toml:2: agent.name: must not contain a NUL character (\\x00)"),
        ('[runs.env]\n"A=B" = "1"\n', "agent.toml:2: runs.env.A=B: an environment variable name must be"),
        ('[runs.env]\nA = "x\\u0000"\n', "agent.toml:2: runs.env.A: must not contain a NUL character"),
        ('[agent]\nstate_dir = "/tmp/a\\u0000"\n', "agent.toml:2: agent.state_dir: must not contain a NUL"),
    ],
)
def test_nul_is_refused_where_it_could_never_work(write_toml: WriteToml, text: str, expected: str) -> None:
    problems = _problems(write_toml("agent.toml", text))
    assert any(problem.startswith(expected) for problem in problems), problems


def test_echoed_values_escape_controls_bidi_overrides_and_nul(write_toml: WriteToml) -> None:
    text = '[agent]\nmax_polls = "\\u001b[2J\\u202egnp.exe\\u0000\\r\\nFAKE: ok"\n"\\u202ekey" = 1\n'
    problems = _problems(write_toml("agent.toml", text))
    joined = "\n".join(problems)
    assert "\x1b" not in joined and "\u202e" not in joined and "\x00" not in joined and "\r" not in joined
    assert len(problems) == 2 and "\n" not in problems[0]
    assert '\\x1b[2J\\u202egnp.exe\\x00\\r\\nFAKE: ok"' in problems[0]
    assert "agent.\\u202ekey: unknown key" in problems[1]


def test_a_blank_api_key_is_refused_from_the_file_the_flag_and_the_key_file(
    write_toml: WriteToml, tmp_path: Path
) -> None:
    from localagent.config import FlagOverrides, FlagSetting

    assert _problems(write_toml("agent.toml", '[api]\nkey = "  "\n')) == [
        "agent.toml:2: api.key: must not be empty (to use no key, leave api.key and --key out)"
    ]
    with pytest.raises(ConfigError, match=r"flag --key: api.key: must not be empty"):
        load_config([], FlagOverrides(settings=(FlagSetting("api.key", "", "--key"),)), {"HOME": str(tmp_path)})
    key_file = tmp_path / "key"
    key_file.write_text("two words\n")
    text = f'[api]\nkey_file = "{key_file}"\n'
    assert _problems(write_toml("agent.toml", text)) == [
        "agent.toml:2: api.key_file: the key in key must be printable ASCII without spaces or control "
        "characters (it is sent in an HTTP header)"
    ]


def test_a_reload_whose_loader_fails_unexpectedly_shows_the_error_on_health(tmp_path: Path) -> None:
    import json
    import urllib.request

    from localagent.agent.reload.coordinator import ReloadCoordinator
    from tests.ports import free_port

    def broken_loader() -> LoadedConfig:
        raise RuntimeError("loader bug")

    port = free_port()
    fake = FakeServer()
    loaded = loaded_config(tmp_path, health={"address": f"127.0.0.1:{port}"})
    harness = Harness(loaded, fake)
    try:
        fake.wait_for(lambda: len(fake.claims) >= 1)
        assert not ReloadCoordinator(harness.agent, broken_loader).reload("SIGHUP")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as reply:
            body = json.loads(reply.read())
        assert body["config"]["error"] == "config: the config could not be loaded: RuntimeError: loader bug"
        assert body["config"]["generation"] == 1
    finally:
        harness.inbox.deliver(signal.SIGTERM)
        assert harness.join() == 0
