"""What a reload changed: every key whose value differs, with old and new values, secrets masked.

Usage::

    changes = diff_configs(old_loaded, new_loaded)
    describe_changes(changes)
    # "agent.labels ['a'] -> ['a', 'b']; agent.poll_interval 10s -> 5s"

Values are shown as the config file would spell them (durations ``10s``, sizes ``64MiB``); ``runs.env``
is compared variable by variable. ``api.key``, ``runs.env`` variables whose name looks secret and the
password in ``server.database`` are masked; a rotated key (same ``api.key_file``, new content) shows as
``api.key_file (content) ******** -> ******** (rotated)`` so the log says it happened without leaking it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from localagent.config.render import MASK, SECRET_ENV_NAME, redact_url

if TYPE_CHECKING:
    from localagent.config import LoadedConfig

UNSET = "(unset)"
KEY_CONTENT = "api.key_file (content)"


@dataclass(frozen=True)
class ConfigChange:
    """One key that differs between two configs; ``old``/``new`` are display strings, already masked."""

    key: str
    old: str
    new: str

    def __str__(self) -> str:
        return f"{self.key} {self.old} -> {self.new}"


def _flatten(document: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, value in document.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, key + ".")
        elif isinstance(value, Mapping):
            yield key, {}
        else:
            yield key, value


def _is_secret(key: str) -> bool:
    if key == "api.key":
        return True
    return key.startswith("runs.env.") and SECRET_ENV_NAME.search(key.removeprefix("runs.env.")) is not None


def show(key: str, value: Any) -> str:
    """``value`` of ``key`` for a log line: masked when secret, ``(unset)`` when absent."""
    if value is None:
        return UNSET
    if _is_secret(key):
        return MASK
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if key == "server.database":
            value = redact_url(value)
        return value if value and value.strip() == value else repr(value)
    if isinstance(value, (list, tuple)):
        return repr([str(item) if not isinstance(item, (int, float, bool)) else item for item in value])
    if isinstance(value, Mapping):
        return "{}" if not value else repr(dict(value))
    return str(value)


def diff_configs(old: LoadedConfig, new: LoadedConfig) -> list[ConfigChange]:
    """Every key whose effective value differs, in the model's order, plus a rotated key file's content."""
    before = dict(_flatten(old.config.model_dump(mode="json")))
    after = dict(_flatten(new.config.model_dump(mode="json")))
    # model_dump masks SecretStr as "**********": compare the real keys, show the mask.
    before["api.key"] = old.config.api.key.get_secret_value() if old.config.api.key is not None else None
    after["api.key"] = new.config.api.key.get_secret_value() if new.config.api.key is not None else None
    changes: list[ConfigChange] = []
    for key in [*before, *(k for k in after if k not in before)]:
        old_value, new_value = before.get(key), after.get(key)
        if old_value != new_value:
            changes.append(ConfigChange(key, show(key, old_value), show(key, new_value)))
    same_file = old.config.api.key_file == new.config.api.key_file and new.config.api.key_file is not None
    if same_file and new.config.api.key is None and old.api_key != new.api_key:
        changes.append(ConfigChange(KEY_CONTENT, MASK, f"{MASK} (rotated)"))
    return changes


def describe_changes(changes: list[ConfigChange]) -> str:
    """``"agent.labels ['a'] -> ['a', 'b']; agent.poll_interval 10s -> 5s"``, or ``"no effective change"``."""
    if not changes:
        return "no effective change"
    return "; ".join(str(change) for change in changes)
