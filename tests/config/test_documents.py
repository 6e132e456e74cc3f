"""The committed schema, example file and docs agree with the model."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from pydantic_core import PydanticUndefined

from localagent.config import AgentConfig, load_config
from localagent.config.render import toml_value
from localagent.config.schema import schema_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

ROOT = Path(__file__).resolve().parents[2]


def model_keys() -> dict[str, Any]:
    """Every dotted key of the model with its constant default (PydanticUndefined for computed ones)."""
    keys: dict[str, Any] = {}
    for section, section_field in AgentConfig.model_fields.items():
        model = section_field.annotation
        for name, field in model.model_fields.items():  # type: ignore[union-attr]
            default = field.default
            if field.default_factory is dict:
                default = {}
            elif field.default_factory is not None:
                default = PydanticUndefined
            keys[f"{section}.{name}"] = default
    return keys


def test_committed_schema_matches_the_model() -> None:
    committed = (ROOT / "schemas" / "agent.schema.json").read_text(encoding="utf-8")
    assert committed == schema_text(), "regenerate: localagent config schema > schemas/agent.schema.json"
    schema = json.loads(committed)
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(AgentConfig.model_fields)


def test_example_file_is_valid_and_documents_every_key(tmp_path: Path) -> None:
    path = ROOT / "agent.example.toml"
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == "#:schema ./schemas/agent.schema.json"
    loaded = load_config([path], environ={"HOME": str(tmp_path)})
    assert loaded.config.agent.run_unlabeled is True
    assert loaded.config.api.url == "embedded"
    assert loaded.origins["agent.state_dir"] == "default"
    lines = text.splitlines()
    shown: dict[str, int] = {}  # dotted key -> index of the line that shows it
    table = ""
    for index, line in enumerate(lines):
        header = re.match(r"^\[([a-z_.]+)\]$", line)
        if header:
            table = header.group(1)
            shown.setdefault(table, index)
            continue
        written = re.match(r"^(?:# )?([a-z_]+) = ", line)
        if written and table:
            shown.setdefault(f"{table}.{written.group(1)}", index)
    for key in model_keys():
        assert key in shown, f"agent.example.toml does not show {key}"
        around = (lines[shown[key] - 1], lines[shown[key] + 1] if key == "runs.env" else "")
        assert any(line.startswith("# ") and not re.match(r"^# [a-z_]+ = ", line) for line in around), (
            f"{key} has no comment"
        )
    run_unlabeled = lines.index("run_unlabeled = true")
    assert "no labels" in "\n".join(lines[run_unlabeled - 3 : run_unlabeled])
    assert tomllib.loads(text)  # plain TOML too


def test_docs_list_every_key_with_its_default() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \| (.+?) \|", text, flags=re.MULTILINE))
    keys = model_keys()
    assert set(rows) == set(keys)
    for key, default in keys.items():
        if default is PydanticUndefined:
            continue
        if default is None:
            assert rows[key] == "not set", key
            continue
        section, name = key.split(".")
        shown = AgentConfig.model_validate({section: {name: default}}).model_dump(mode="json")[section][name]
        assert rows[key] == f"`{toml_value(shown)}`", f"docs default of {key}"
    for topic in ("## Precedence", "## Interpolation", "## Secrets", "key_file", "base.toml", "host.toml"):
        assert topic in text or topic.replace("host.toml", "etl-01.toml") in text
