"""Loading the configuration: read every source, merge them in one place, validate once.

Usage::

    loaded = load_config(["base.toml", "host.toml"], FlagOverrides(labels=("gpu",)))
    loaded.config.agent.labels          # what base.toml, host.toml, the env and --label say, merged
    loaded.origins["agent.labels"]      # "host.toml:3 + flag --label"

Precedence is the order of :func:`build_sources` (lowest first): built-in defaults < each file in the
order given < ``LOCALAGENT_<SECTION>__<KEY>`` variables < command-line flags. Tables merge deeply and
arrays replace, except that ``--label``, ``--env`` and ``--import-path`` add to what lower sources say.
Every problem found anywhere is collected and raised together in one :class:`ConfigError`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from localagent.config.locate import KeyPath
from localagent.config.messages import describe_errors
from localagent.config.model import AgentConfig, api_key_problem
from localagent.config.sources import (
    DefaultsSource,
    EnvSource,
    FlagOverrides,
    FlagSource,
    Origin,
    Setting,
    Source,
    file_sources,
)
from localagent.errors import ConfigError, ConfigProblem

MAX_PROBLEMS = 100
"""A load lists at most this many problems (and says how many more it found)."""


@dataclass(frozen=True)
class LoadedConfig:
    """One successful load: the frozen model plus where every value came from.

    ``origins`` maps each dotted key (``agent.labels``, ``runs.env.TZ``) to ``default``,
    ``<file>:<line>``, ``env LOCALAGENT_...`` or ``flag --...`` (joined by `` + `` when a flag added to
    an array). ``hash`` is a sha256 of the effective config, secrets included (so a rotated key counts
    as a change), for this process only; what is shown or sent to the API is
    :func:`localagent.config.render.public_hash`, which leaves the secrets out (a hash over a weak key
    could be guessed offline by someone who knows the rest of the config). ``api_key`` is ``api.key``,
    else the content of ``api.key_file``.
    """

    config: AgentConfig
    origins: Mapping[str, str]
    files: tuple[Path, ...]
    hash: str
    api_key: str | None


def build_sources(files: Sequence[str | Path], flags: FlagOverrides, environ: Mapping[str, str]) -> tuple[Source, ...]:
    """The precedence order, as data: later sources win."""
    return (DefaultsSource(environ), *file_sources(files, environ), EnvSource(environ), FlagSource(flags))


@dataclass
class _Merged:
    tree: dict[str, Any]
    origins: dict[KeyPath, Origin]
    element_lines: dict[KeyPath, tuple[int | None, ...]] = field(default_factory=dict)
    # Every key of ``origins`` under each of its proper prefixes (a dict used as an ordered set), so that
    # replacing a table forgets what was under it in time proportional to what is forgotten: a file of
    # 100,000 keys merges in linear time.
    below: dict[KeyPath, dict[KeyPath, None]] = field(default_factory=dict)

    def set_origin(self, path: KeyPath, origin: Origin) -> None:
        if path not in self.origins:
            for end in range(1, len(path)):
                self.below.setdefault(path[:end], {})[path] = None
        self.origins[path] = origin

    def forget_below(self, path: KeyPath) -> None:
        """Drop the origins of ``path`` and everything under it (a new value replaces them all)."""
        for known in [path, *self.below.pop(path, {})]:
            if self.origins.pop(known, None) is None:
                continue
            for end in range(1, len(known)):
                keys = self.below.get(known[:end])
                if keys is not None:
                    keys.pop(known, None)

    def origin_of(self, path: KeyPath) -> Origin | None:
        """Where ``path`` was set: its own origin, its closest parent's, else its first child's.

        An array element read from a file gets the element's own line.
        """
        for end in range(len(path), 0, -1):
            origin = self.origins.get(path[:end])
            if origin is None:
                continue
            lines = self.element_lines.get(path[:end], ())
            index = path[end] if end < len(path) else None
            if isinstance(index, int) and 0 <= index < len(lines) and lines[index] is not None:
                return Origin(origin.source, lines[index])
            return origin
        # A whole table nobody may set (an unknown section): point at the first key written in it.
        first = next(iter(self.below.get(path, {})), None)
        return None if first is None else self.origins[first]


def merge(settings: Sequence[Setting]) -> _Merged:
    """Apply ``settings`` in order: the one place where precedence happens."""
    merged = _Merged({}, {})
    for setting in settings:
        parent = merged.tree
        for depth, part in enumerate(setting.path[:-1], start=1):
            child = parent.get(str(part))
            if not isinstance(child, dict):
                child = {}
                parent[str(part)] = child
                merged.forget_below(setting.path[:depth])
            parent = child
        last = str(setting.path[-1])
        current = parent.get(last)
        if setting.add and isinstance(current, (list, tuple)) and isinstance(setting.value, list):
            parent[last] = [*current, *setting.value]
            before = merged.origins.get(setting.path)
            combined = setting.origin if before is None else Origin(f"{before} + {setting.origin}")
            merged.set_origin(setting.path, combined)
            merged.element_lines.pop(setting.path, None)
            continue
        if isinstance(setting.value, dict) and not setting.value and isinstance(current, dict):
            continue  # an empty table merges into an existing one as a no-op
        parent[last] = setting.value
        merged.forget_below(setting.path)
        merged.set_origin(setting.path, setting.origin)
        merged.element_lines[setting.path] = setting.element_lines
    return merged


def _read_api_key(config: AgentConfig, origin: Origin | None) -> tuple[str | None, list[ConfigProblem]]:
    if config.api.key is not None:
        return config.api.key.get_secret_value(), []
    key_file = config.api.key_file
    if key_file is None:
        return None, []
    where = origin or Origin("config")
    try:
        key = key_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        reason = f"key file {key_file} does not exist"
    except IsADirectoryError:
        reason = f"key file {key_file} is a directory"
    except PermissionError:
        reason = f"key file {key_file} is not readable (permission denied)"
    except (OSError, UnicodeDecodeError) as exc:
        reason = f"cannot read key file {key_file}: {exc}"
    else:
        problem = api_key_problem(key)
        if problem is None:
            return key, []
        reason = f"key file {key_file} is empty" if not key else f"the key in {key_file} {problem}"
    return None, [ConfigProblem(where.source, "api.key_file", reason, line=where.line)]


def _config_error(problems: list[ConfigProblem], omitted: int) -> ConfigError:
    shown = problems[:MAX_PROBLEMS]
    return ConfigError(shown, omitted=omitted + len(problems) - len(shown))


def config_hash(config: AgentConfig, api_key: str | None) -> str:
    """sha256 hex of the canonical JSON of ``config`` (secrets revealed, resolved key included)."""
    document = config.model_dump(mode="json")
    document["api"]["key"] = config.api.key.get_secret_value() if config.api.key is not None else None
    document["api"]["resolved_key"] = api_key
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_config(
    files: Sequence[str | Path],
    flags: FlagOverrides | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Load, merge and validate; raise :class:`ConfigError` listing every problem found.

    ``environ`` defaults to ``os.environ``; pass a snapshot to make reloads see the environment as it
    was at start. ``api.key_file`` is read on every call.
    """
    environment: Mapping[str, str] = dict(os.environ) if environ is None else environ
    settings: list[Setting] = []
    problems: list[ConfigProblem] = []
    for source in build_sources(files, flags or FlagOverrides(), environment):
        source_settings, source_problems = source.read()
        settings.extend(source_settings)
        problems.extend(source_problems)
    merged = merge(settings)
    try:
        config = AgentConfig.model_validate(merged.tree)
    except ValidationError as exc:
        errors = exc.errors()
        # Describing a problem costs a few lookups; a file of 100,000 unknown keys lists the first ones.
        problems.extend(describe_errors(errors[:MAX_PROBLEMS], merged.origin_of))
        raise _config_error(problems, len(errors) - len(errors[:MAX_PROBLEMS])) from exc
    api_key, key_problems = _read_api_key(config, merged.origin_of(("api", "key_file")))
    problems.extend(key_problems)
    if problems:
        raise _config_error(problems, 0)
    origins = {
        ".".join(str(part) for part in path): str(origin)
        for path, origin in merged.origins.items()
        if len(path) > 1  # sections are tables of keys, not values
    }
    return LoadedConfig(
        config=config,
        origins=MappingProxyType(origins),
        files=tuple(Path(f).expanduser().absolute() for f in files),
        hash=config_hash(config, api_key),
        api_key=api_key,
    )


Loader = Callable[[], LoadedConfig]
"""What the agent gets: a function that re-runs the whole load (``lambda: load_config(files, flags, env)``)."""
