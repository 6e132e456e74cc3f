"""Showing an effective configuration: as TOML (optionally with each value's origin) or as JSON.

Usage::

    print(render_toml(loaded, sources=True))
    print(render_json(loaded))

Secrets are masked: ``api.key`` always, and ``runs.env`` values whose name looks like a secret
(``*KEY*``, ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``, ...). The TOML writer covers what the model
holds (tables, strings, numbers, booleans, arrays); unset optional keys are shown as comments
because TOML has no null.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from localagent.config.loader import LoadedConfig

MASK = "********"
SECRET_ENV_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH", re.IGNORECASE)
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


def masked_document(loaded: LoadedConfig) -> dict[str, Any]:
    """The effective config as JSON-ready data, secrets replaced by ``********``."""
    document: dict[str, Any] = loaded.config.model_dump(mode="json")
    if document["api"].get("key") is not None:
        document["api"]["key"] = MASK
    env = document["runs"]["env"]
    for name in env:
        if SECRET_ENV_NAME.search(name):
            env[name] = MASK
    return document


def public_hash(loaded: LoadedConfig) -> str:
    """sha256 hex of the effective config with its secrets masked: what is shown, logged and reported.

    ``loaded.hash`` covers the secrets too (a rotated key is a change), but a hash over a weak key could be
    guessed offline by anyone who knows the rest of the config, so it never leaves the process. Computed
    once per config (every heartbeat and ``/health`` request reports it): the full hash names the config.
    """
    known = _PUBLIC_HASHES.get(loaded.hash)
    if known is None:
        known = _public_hash(loaded)
        if len(_PUBLIC_HASHES) >= _PUBLIC_HASHES_KEPT:
            _PUBLIC_HASHES.clear()
        _PUBLIC_HASHES[loaded.hash] = known
    return known


_PUBLIC_HASHES: dict[str, str] = {}  # full hash -> public hash, for the few configs a process goes through
_PUBLIC_HASHES_KEPT = 16


def _public_hash(loaded: LoadedConfig) -> str:
    document = masked_document(loaded)
    if document["server"].get("database"):
        document["server"]["database"] = redact_url(document["server"]["database"])
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def redact_url(url: str) -> str:
    """``scheme://user:password@host/db`` -> ``scheme://user:********@host/db``; other text unchanged."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user, has_password, _ = credentials.partition(":")
    return f"{scheme}://{user}:{MASK}@{host}" if has_password else url


def toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else toml_string(key)


def toml_string(text: str) -> str:
    out = ['"']
    for char in text:
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def toml_value(value: Any) -> str:
    """One TOML value (inline form)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        items = ", ".join(f"{toml_key(str(k))} = {toml_value(v)}" for k, v in value.items() if v is not None)
        return "{ " + items + " }" if items else "{}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def dumps_toml(document: Mapping[str, Any], comments: Mapping[str, str] | None = None) -> str:
    """``document`` as TOML; ``comments`` maps dotted keys to a trailing ``# comment``."""
    lines: list[str] = []
    _write_table(lines, document, (), comments or {})
    return "\n".join(lines).strip("\n") + "\n"


def _write_table(
    lines: list[str], table: Mapping[str, Any], path: tuple[str, ...], comments: Mapping[str, str]
) -> None:
    scalars = [(k, v) for k, v in table.items() if not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
    if path and (scalars or not tables):
        if lines:
            lines.append("")
        lines.append("[" + ".".join(toml_key(part) for part in path) + "]")
    for key, value in scalars:
        dotted = ".".join((*path, key))
        note = comments.get(dotted)
        line = f"# {toml_key(key)} is not set" if value is None else f"{toml_key(key)} = {toml_value(value)}"
        lines.append(f"{line}  # {note}" if note else line)
    for key, value in tables:
        _write_table(lines, value, (*path, key), comments)


def render_toml(loaded: LoadedConfig, sources: bool = False) -> str:
    """The effective config as TOML; with ``sources`` each key says where its value came from."""
    header = [f"# effective configuration (hash {public_hash(loaded)[:12]})"]
    if loaded.files:
        header.append("# files: " + ", ".join(str(f) for f in loaded.files))
    comments = dict(loaded.origins) if sources else {}
    return "\n".join(header) + "\n\n" + dumps_toml(masked_document(loaded), comments)


def render_json(loaded: LoadedConfig, sources: bool = False) -> str:
    """The effective config as JSON; with ``sources``, ``{"config": ..., "sources": {key: origin}}``."""
    document = masked_document(loaded)
    if sources:
        payload: dict[str, Any] = {"config": document, "sources": dict(sorted(loaded.origins.items()))}
        return json.dumps(payload, indent=2)
    return json.dumps(document, indent=2)
