"""A config fuzzer: hostile documents end in a config or a ConfigError naming file and line, nothing else.

Bounded to a few seconds in the default run (a fixed number of examples, small documents except for the
one "many keys" family). What it throws: arrays and inline tables nested hundreds deep, dotted keys
thousands deep, numbers of thousands of digits, thousands of keys, control characters, bidi overrides and
NUL in keys and values, and random bytes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localagent.config import LoadedConfig, load_config
from localagent.errors import ConfigError

HOSTILE_CHARS = "\x00\x01\x07\x08\x1b\x7f\x85\u200b\u200e\u202a\u202e\u2066\u2069\ufeff\n\r\t\"'\\[]{}=#.,"

hostile_text = st.text(alphabet=st.sampled_from(HOSTILE_CHARS) | st.characters(codec="utf-8"), max_size=30)


def _toml_string(text: str) -> str:
    """``text`` as a TOML basic string (every control escaped, as TOML requires)."""
    escaped = "".join(char if char.isprintable() and char not in '"\\' else f"\\u{ord(char):04x}" for char in text)
    return f'"{escaped}"'


@st.composite
def deep_documents(draw: st.DrawFn) -> str:
    depth = draw(st.integers(min_value=1, max_value=1500))
    kind = draw(st.sampled_from(["array", "table", "dotted", "header", "mixed"]))
    key = draw(st.sampled_from(["agent.labels", "runs.env", "x", "agent"]))
    if kind == "array":
        return f"{key} = " + "[" * depth + "1" + "]" * depth + "\n"
    if kind == "table":
        return f"{key} = " + "{ a = " * depth + "1" + " }" * depth + "\n"
    if kind == "dotted":
        return ".".join(["k"] * depth) + " = 1\n"
    if kind == "header":
        return "[" + ".".join(["t"] * depth) + "]\nk = 1\n"
    return f"{key} = " + "[{ a = " * depth + "1" + "}]" * depth + "\n"


@st.composite
def huge_numbers(draw: st.DrawFn) -> str:
    digits = draw(st.integers(min_value=1, max_value=6000))
    key = draw(st.sampled_from(["max_concurrent_runs", "max_polls", "poll_interval", "name", "labels"]))
    number = draw(
        st.sampled_from(["9" * digits, "-" + "9" * digits, "1e" + "9" * min(digits, 50), "0x" + "f" * digits])
    )
    quoted = draw(st.booleans())
    value = f'"{number}"' if quoted else number
    section = draw(st.sampled_from(["agent", "api", "runs", "logs"]))
    return f"[{section}]\n{key} = {value}\n"


@st.composite
def many_keys(draw: st.DrawFn) -> str:
    count = draw(st.integers(min_value=1000, max_value=20_000))
    section = draw(st.sampled_from(["runs.env", "agent", "nowhere"]))
    return f"[{section}]\n" + "".join(f'K{index} = "v"\n' for index in range(count))


@st.composite
def hostile_strings(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        section = draw(st.sampled_from(["agent", "api", "runs", "runs.env", "logs", "health", "server"]))
        key = draw(st.sampled_from(["name", "labels", "state_dir", "url", "key", "stop_signal", "level", "X"]))
        raw_key = draw(st.booleans())
        key_text = _toml_string(draw(hostile_text)) if raw_key else key
        value = _toml_string(draw(hostile_text))
        if draw(st.booleans()):
            value = f"[{value}]"
        lines.append(f"[{section}]\n{key_text} = {value}\n")
    return "".join(lines)


raw_text = st.text(alphabet=st.sampled_from(HOSTILE_CHARS + "abc019 ") | st.characters(), max_size=200)

documents = st.one_of(deep_documents(), huge_numbers(), many_keys(), hostile_strings(), raw_text)


def _check(path: Path, name: str) -> None:
    try:
        loaded = load_config([path], environ={"HOME": str(path.parent)})
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            shown = str(problem)
            assert shown.isprintable(), shown  # controls, bidi overrides and NUL are escaped
            if problem.source == name:
                assert problem.line is not None, shown  # every problem in the file names its line
    else:
        assert isinstance(loaded, LoadedConfig)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(documents)
def test_fuzzed_documents_end_in_a_config_or_a_config_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory, "agent.toml")
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        _check(path, str(path))


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_end_in_a_config_or_a_config_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory, "agent.toml")
        path.write_bytes(data)
        _check(path, str(path))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.one_of(deep_documents(), huge_numbers(), hostile_strings(), raw_text))
def test_fuzzed_flows_files_end_in_flows_or_a_config_error(text: str) -> None:
    from localagent.api.flowfile import parse_flows

    try:
        parse_flows(text if text.startswith("[") else "[[flow]]\n" + text, "flows.toml")
    except ConfigError as exc:
        assert all(str(problem).isprintable() for problem in exc.problems)
