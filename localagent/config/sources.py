"""The four sources of configuration, lowest precedence first: defaults, files, environment, flags.

Usage::

    sources = (DefaultsSource(environ), FileSource("agent.toml", environ), EnvSource(environ), FlagSource(flags))
    for source in sources:
        settings, problems = source.read()

Every source turns what it read into :class:`Setting` objects (a key path, a value, where it came from,
and whether it *adds* to what lower sources said); :mod:`localagent.config.loader` merges them in one
place. Sources never raise for bad input: they return :class:`~localagent.errors.ConfigProblem` objects so
that one load reports every problem at once.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from localagent.config.guards import MAX_DEPTH, MAX_FILE_BYTES, check_size, check_text, too_deep
from localagent.config.interpolate import interpolate_tree
from localagent.config.locate import KeyPath, line_of, locate_keys
from localagent.config.values import is_text_field, parse_value_text
from localagent.errors import ConfigProblem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

ENV_PREFIX = "LOCALAGENT_"


@dataclass(frozen=True)
class Origin:
    """Where one value came from: ``default``, ``agent.toml:7``, ``env LOCALAGENT_X__Y`` or ``flag --name``."""

    source: str
    line: int | None = None

    def __str__(self) -> str:
        return self.source if self.line is None else f"{self.source}:{self.line}"


DEFAULT_ORIGIN = Origin("default")


@dataclass(frozen=True)
class Setting:
    """One value a source sets at ``path``; with ``add`` it is appended to the array lower sources built.

    ``element_lines`` gives, for an array read from a file, the line of each element (for error messages).
    """

    path: KeyPath
    value: Any
    origin: Origin
    add: bool = False
    element_lines: tuple[int | None, ...] = ()


@dataclass(frozen=True)
class FlagSetting:
    """A dotted key set by a named command-line flag, e.g. ``FlagSetting("agent.name", "a1", "--name")``."""

    key: str
    value: Any
    flag: str


@dataclass(frozen=True)
class FlagOverrides:
    """Everything the command line says about the configuration; the highest-precedence source.

    Usage::

        FlagOverrides(settings=(FlagSetting("agent.max_concurrent_runs", 2, "--limit"),),
                      assignments=("logs.level=DEBUG",), labels=("gpu",), env=("TZ=UTC",))

    ``assignments`` are ``--set KEY=VALUE`` texts (the value parsed as TOML, else kept as a string) and
    are applied before ``settings``, so a named flag beats ``--set`` for the same key. ``labels``,
    ``env`` (``KEY=VALUE`` texts) and ``import_paths`` add to what lower sources say.
    """

    settings: tuple[FlagSetting, ...] = ()
    assignments: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    import_paths: tuple[str, ...] = ()

    LABEL_FLAG = "--label"
    ENV_FLAG = "--env"
    IMPORT_PATH_FLAG = "--import-path"
    SET_FLAG = "--set"


class Source(Protocol):
    """Reads one layer of configuration."""

    def read(self) -> tuple[list[Setting], list[ConfigProblem]]: ...


def _walk(tree: Mapping[str, Any], prefix: KeyPath = ()) -> list[tuple[KeyPath, Any]]:
    """A table as settings: each nested table as ``{}`` (merging into a table is a no-op, but it records
    where an unknown table was written), then its content; arrays and scalars are leaves.
    """
    leaves: list[tuple[KeyPath, Any]] = []
    for key, value in tree.items():
        path = (*prefix, key)
        if isinstance(value, dict):
            leaves.append((path, {}))
            leaves.extend(_walk(value, path))
        else:
            leaves.append((path, value))
    return leaves


@dataclass(frozen=True)
class DefaultsSource:
    """The model's built-in defaults, with ``agent.state_dir`` taken from the captured environment."""

    environ: Mapping[str, str]

    def read(self) -> tuple[list[Setting], list[ConfigProblem]]:
        from localagent.config.model import AgentConfig

        defaults = AgentConfig().model_dump(mode="python")
        base = self.environ.get("XDG_STATE_HOME") or str(Path(self.environ.get("HOME") or "~", ".local", "state"))
        defaults["agent"]["state_dir"] = Path(base) / "localagent"  # expanded by the model
        return [Setting(path, value, DEFAULT_ORIGIN) for path, value in _walk(defaults)], []


@dataclass(frozen=True)
class FileSource:
    """One TOML file, interpolated with ``${VAR}`` from the captured environment; lines kept for errors."""

    path: Path
    environ: Mapping[str, str]
    display: str = field(default="")

    def read(self) -> tuple[list[Setting], list[ConfigProblem]]:
        name = self.display or str(self.path)
        try:
            with self.path.open("rb") as file:
                data = file.read(MAX_FILE_BYTES + 1)  # never a whole huge file in memory
                size = os.fstat(file.fileno()).st_size if len(data) > MAX_FILE_BYTES else len(data)
            too_big = check_size(data, max(size, len(data)))
            if too_big is not None:
                return [], [ConfigProblem(name, "", too_big[1], line=too_big[0])]
            text = data.decode("utf-8")
        except FileNotFoundError:
            return [], [ConfigProblem(name, "", "config file does not exist (check the path given to -c/--config)")]
        except IsADirectoryError:
            return [], [ConfigProblem(name, "", "is a directory, not a config file")]
        except UnicodeDecodeError as exc:
            line = exc.object[: exc.start].count(b"\n") + 1
            reason = f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
            return [], [ConfigProblem(name, "", f"cannot read config file: {reason}", line=line)]
        except OSError as exc:
            return [], [ConfigProblem(name, "", f"cannot read config file: {_os_reason(exc)}")]
        limit = check_text(text)
        if limit is not None:
            return [], [ConfigProblem(name, "", limit[1], line=limit[0])]
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            return [], [_syntax_problem(name, text, exc)]
        except (RecursionError, ValueError) as exc:  # past what check_text catches; never a traceback
            return [], [ConfigProblem(name, "", f"cannot read this document: {exc}", line=1)]
        lines = locate_keys(text)
        deep = too_deep(document)
        if deep is not None:
            reason = f"keys nested more than {MAX_DEPTH} levels deep"
            deep_line = next((at for path, at in lines.items() if path[: len(deep)] == deep), line_of(lines, deep))
            return [], [ConfigProblem(name, _dotted(deep[:3]) + "...", reason, line=deep_line)]
        document, failures = interpolate_tree(document, self.environ)
        problems = [
            ConfigProblem(name, _dotted(path), message, line=line_of(lines, path)) for path, message in failures
        ]
        settings = [
            Setting(path, value, Origin(name, line_of(lines, path)), element_lines=_element_lines(lines, path, value))
            for path, value in _walk(document)
        ]
        return settings, problems


def _element_lines(lines: dict[KeyPath, int], path: KeyPath, value: Any) -> tuple[int | None, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(lines.get((*path, index)) for index in range(len(value)))


def _os_reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_AT_END = " (at end of document)"


def _syntax_problem(name: str, text: str, exc: tomllib.TOMLDecodeError) -> ConfigProblem:
    """tomllib says ``Invalid value (at line 3, column 9)``; keep its line and column in our form."""
    message = str(exc)
    line: int | None = None
    column: int | None = None
    match = _TOML_POSITION.search(message)
    if match:
        line, column = int(match.group(1)), int(match.group(2))
        message = message[: match.start()]
    elif message.endswith(_TOML_AT_END):
        message = message[: -len(_TOML_AT_END)] + " at the end of the file"
        line = text.count("\n") + (0 if text.endswith("\n") else 1)
    return ConfigProblem(name, "", f"TOML syntax error: {message[:1].lower()}{message[1:]}", line=line, column=column)


def _dotted(path: KeyPath) -> str:
    return ".".join(str(part) for part in path)


@dataclass(frozen=True)
class EnvSource:
    """``LOCALAGENT_<SECTION>__<KEY>[__<SUBKEY>]`` variables; values parsed as TOML, else plain strings.

    Only names with a ``__`` after the prefix are configuration: ``LOCALAGENT_API_URL`` (used by the
    shell commands) is left alone. Section and key are lower-cased; deeper parts (``runs.env`` names)
    keep their case.
    """

    environ: Mapping[str, str]

    def read(self) -> tuple[list[Setting], list[ConfigProblem]]:
        settings: list[Setting] = []
        problems: list[ConfigProblem] = []
        for name in sorted(self.environ):
            if not name.startswith(ENV_PREFIX) or "__" not in name[len(ENV_PREFIX) :]:
                continue
            parts = name[len(ENV_PREFIX) :].split("__")
            origin = Origin(f"env {name}")
            if any(not part for part in parts):
                problems.append(
                    ConfigProblem(
                        origin.source, "", "expected LOCALAGENT_<SECTION>__<KEY>, e.g. LOCALAGENT_AGENT__NAME"
                    )
                )
                continue
            path: KeyPath = (parts[0].lower(), parts[1].lower(), *parts[2:])
            settings.append(Setting(path, parse_value_text(path, self.environ[name]), origin))
        return settings, problems


@dataclass(frozen=True)
class FlagSource:
    """The command line (:class:`FlagOverrides`): ``--set`` first, then named flags, then the additive lists."""

    flags: FlagOverrides

    def read(self) -> tuple[list[Setting], list[ConfigProblem]]:
        settings: list[Setting] = []
        problems: list[ConfigProblem] = []
        set_origin = Origin(f"flag {FlagOverrides.SET_FLAG}")
        for text in self.flags.assignments:
            key, sep, raw = text.partition("=")
            path = _split_key(key)
            if not sep or path is None:
                problems.append(
                    ConfigProblem(set_origin.source, "", f"expected KEY=VALUE like agent.name=worker-1, got {text!r}")
                )
                continue
            settings.append(Setting(path, parse_value_text(path, raw), set_origin))
        for flag_setting in self.flags.settings:
            path = _split_key(flag_setting.key)
            if path is None:
                problems.append(ConfigProblem(f"flag {flag_setting.flag}", flag_setting.key, "not a dotted key"))
                continue
            settings.append(Setting(path, flag_setting.value, Origin(f"flag {flag_setting.flag}")))
        if self.flags.labels:
            origin = Origin(f"flag {FlagOverrides.LABEL_FLAG}")
            settings.append(Setting(("agent", "labels"), list(self.flags.labels), origin, add=True))
        if self.flags.import_paths:
            origin = Origin(f"flag {FlagOverrides.IMPORT_PATH_FLAG}")
            settings.append(Setting(("runs", "import_paths"), list(self.flags.import_paths), origin, add=True))
        env_origin = Origin(f"flag {FlagOverrides.ENV_FLAG}")
        for text in self.flags.env:
            name, sep, value = text.partition("=")
            if not sep or not name.strip():
                problems.append(ConfigProblem(env_origin.source, "runs.env", f"expected KEY=VALUE, got {text!r}"))
                continue
            settings.append(Setting(("runs", "env", name.strip()), value, env_origin))
        return settings, problems


def _split_key(key: str) -> KeyPath | None:
    parts = tuple(part.strip() for part in key.strip().split("."))
    if not parts or any(not part for part in parts):
        return None
    return parts


def file_sources(files: Sequence[str | Path], environ: Mapping[str, str]) -> list[FileSource]:
    """One :class:`FileSource` per path, shown in messages as the user wrote it."""
    return [FileSource(Path(f).expanduser().absolute(), environ, display=str(f)) for f in files]


__all__ = [
    "DEFAULT_ORIGIN",
    "DefaultsSource",
    "EnvSource",
    "FileSource",
    "FlagOverrides",
    "FlagSetting",
    "FlagSource",
    "Origin",
    "Setting",
    "Source",
    "file_sources",
    "is_text_field",
]
