"""Whatever TOML, environment or --set text comes in, loading ends in a config or a ConfigError."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localagent.config import AgentConfig, FlagOverrides, LoadedConfig, load_config
from localagent.config.locate import locate_keys
from localagent.config.render import SECRET_ENV_NAME, dumps_toml, render_json, render_toml
from localagent.errors import ConfigError

SECTIONS = {name: list(field.annotation.model_fields) for name, field in AgentConfig.model_fields.items()}  # type: ignore[union-attr]
KNOWN_KEYS = [key for keys in SECTIONS.values() for key in keys]

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["30s", "5m", "1h30m", "64MiB", "1GB", "SIGTERM", "DEBUG", "json", "embedded",
                     "http://127.0.0.1:4300", "127.0.0.1:0", "${HOME}", "${NOPE:-x}", "${NOPE}", "$$", "${"]),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=6), inner, max_size=3),
    max_leaves=6,
)
section_tables = st.fixed_dictionaries(
    {},
    optional={
        name: st.dictionaries(st.sampled_from([*keys, "bogus"]), values, max_size=4) for name, keys in SECTIONS.items()
    },
)
MUTATIONS = [*"[]{}=\"'#,.\n $\\x1", "[[", '"""', "'''"]
documents = st.one_of(section_tables, st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=3))


def load_or_config_error(text: str, environ: dict[str, str], flags: FlagOverrides | None = None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "agent.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        environ = {"HOME": tmp, **environ}
        try:
            loaded = load_config([path], flags, environ)
        except ConfigError as exc:
            assert exc.problems
            assert all(str(problem) for problem in exc.problems)
            return
        check_loaded(loaded)


def check_loaded(loaded: LoadedConfig) -> None:
    assert len(loaded.hash) == 64
    render_toml(loaded, sources=True)
    render_json(loaded, sources=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_documents_end_in_a_config_or_a_config_error(document: dict[str, Any]) -> None:
    text = dumps_toml(document)
    load_or_config_error(text, {})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(section_tables, st.data())
def test_mutated_documents_end_in_a_config_or_a_config_error(document: dict[str, Any], data: st.DataObject) -> None:
    text = dumps_toml(document)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        position = data.draw(st.integers(min_value=0, max_value=len(text)))
        action = data.draw(st.sampled_from(["insert", "delete", "duplicate"]))
        if action == "insert":
            text = text[:position] + data.draw(st.sampled_from(MUTATIONS)) + text[position:]
        elif action == "delete":
            text = text[:position] + text[position + 3 :]
        else:
            text = text[:position] + text[:position][-10:] + text[position:]
    locate_keys(text)  # the locator never raises, even on text tomllib rejects
    load_or_config_error(text, {})


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([f"LOCALAGENT_{s.upper()}__{k.upper()}" for s, keys in SECTIONS.items() for k in keys]
                        + ["LOCALAGENT_X__Y", "LOCALAGENT___", "LOCALAGENT_RUNS__ENV__A", "LOCALAGENT_A__B__C__D"]),
        st.text(max_size=10).filter(lambda v: "\x00" not in v),
        max_size=4,
    ),
    st.lists(st.text(max_size=12), max_size=3),
)  # fmt: skip
def test_random_environment_and_set_flags_end_in_a_config_or_a_config_error(
    environ: dict[str, str], assignments: list[str]
) -> None:
    load_or_config_error("", environ, FlagOverrides(assignments=tuple(assignments)))


@settings(max_examples=100, deadline=None)
@given(section_tables)
def test_valid_documents_round_trip_through_show(document: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "agent.toml"
        path.write_text(dumps_toml(document), encoding="utf-8", errors="surrogatepass")
        try:
            loaded = load_config([path], environ={"HOME": tmp})
        except ConfigError:
            return
        if loaded.config.api.key is not None or any(SECRET_ENV_NAME.search(name) for name in loaded.config.runs.env):
            return  # masked values do not round-trip, by design
        shown = Path(tmp) / "shown.toml"
        shown.write_text(render_toml(loaded), encoding="utf-8", errors="surrogatepass")
        assert load_config([shown], environ={"HOME": tmp}).config == loaded.config
