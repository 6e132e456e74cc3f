"""Turning flags and ``LOCALAGENT_*`` variables into a commented agent.toml (``localagent config init``).

Usage::

    loaded = load_config([], flags, environ)
    text = init_toml(loaded, KeyReference(variable="LOCALAGENT_API_KEY"))

Only keys that something other than the built-in defaults set are written, each with its meaning and
where it came from, so the file pins no host name and no state dir unless one was given. The API key is
never written: it becomes ``key = "${VAR}"`` or ``key_file = "..."`` (:class:`KeyReference`). Every
other string is written so that loading the file gives back the same value (``$`` doubled, since config
files interpolate ``${VAR}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localagent.config.loader import LoadedConfig
from localagent.config.model import AgentConfig
from localagent.config.render import toml_key, toml_value

DEFAULT_KEY_VARIABLE = "LOCALAGENT_API_KEY"


@dataclass(frozen=True)
class KeyReference:
    """How the file names the API key: a variable (``key = "${VAR}"``) or a key file (``key_file``)."""

    variable: str = DEFAULT_KEY_VARIABLE
    key_file: Path | None = None


def _given(loaded: LoadedConfig, dotted: str) -> str | None:
    """Where ``dotted`` (or anything under it) was set, unless only the defaults set it."""
    origins = [
        part
        for key, origin in loaded.origins.items()
        if key == dotted or key.startswith(dotted + ".")
        for part in origin.split(" + ")  # "default + flag --label": the labels a flag added
        if part != "default"
    ]
    return ", ".join(dict.fromkeys(origins)) if origins else None


def _escape_dollars(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [_escape_dollars(item) for item in value]
    if isinstance(value, dict):
        return {key: _escape_dollars(item) for key, item in value.items()}
    return value


def init_toml(loaded: LoadedConfig, key: KeyReference) -> str:
    """The commented TOML text for ``loaded`` (see the module docstring)."""
    document = loaded.config.model_dump(mode="json")
    lines = [
        "# agent.toml written by `localagent config init` from the flags and LOCALAGENT_* variables given.",
        "# Only what was given is written; every other key keeps its default (docs/configuration.md).",
        "# Check it with: localagent config validate -c agent.toml",
    ]
    written = 0
    for section, section_field in AgentConfig.model_fields.items():
        fields = getattr(section_field.annotation, "model_fields", {})
        entries: list[str] = []
        for name, field in fields.items():
            dotted = f"{section}.{name}"
            origin = _given(loaded, dotted)
            if origin is None:
                continue
            value = document[section][name]
            if dotted == "api.key":
                if value is None:
                    continue
                if key.key_file is not None:
                    entries += [
                        "# API key: read from this file (mode 0600); re-read on every reload",
                        f"key_file = {toml_value(str(key.key_file))}",
                    ]
                else:
                    entries += [
                        f"# API key: taken from ${key.variable} in the agent's environment (never written here)",
                        f"key = {toml_value('${' + key.variable + '}')}",
                    ]
                continue
            if dotted == "api.key_file" and key.key_file is not None and document["api"]["key"] is not None:
                continue  # replaced by the key file written for --key-file
            if value is None:
                continue
            entries.append(f"# {field.description} (from {origin})")
            entries.append(f"{toml_key(name)} = {toml_value(_escape_dollars(value))}")
        if entries:
            lines += ["", f"[{section}]", *entries]
            written += len(entries)
    if not written:
        lines += ["", "# Nothing was given: the built-in defaults apply (`localagent config show` prints them)."]
    return "\n".join(lines) + "\n"
