"""The JSON Schema of ``agent.toml``, generated from the model (``schemas/agent.schema.json``).

Usage::

    text = schema_text()          # what `localagent config schema` prints and the committed file holds

Host-specific defaults (``agent.name``, ``agent.state_dir``) have no ``default`` in the schema, so the
file is the same on every machine. Regenerate with ``localagent config schema > schemas/agent.schema.json``.
"""

from __future__ import annotations

import json
from typing import Any

from localagent.config.model import AgentConfig

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema() -> dict[str, Any]:
    """The schema as data, with a ``$schema`` dialect and a title editors show."""
    schema = AgentConfig.model_json_schema(mode="validation")
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "localagent agent configuration",
        "description": "agent.toml: every key of the localagent agent (see docs/configuration.md)",
        **{key: value for key, value in schema.items() if key not in ("title", "description")},
    }


def schema_text() -> str:
    """The schema as stable, indented JSON with a trailing newline."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
