"""Keeping the API key out of service definitions: a key from the command line or the environment is
written to a mode-0600 key file that the service references by path.

Usage::

    key_file = service_key_file(loaded, without_key, requested=None)   # ConfigError if it cannot be done
    if key_file is not None:
        write_key_file(key_file, loaded.api_key)

``loaded`` is the config as the user asked for it; ``without_key`` is the same load with ``--key``,
``--set api.key=...`` and ``LOCALAGENT_API__KEY`` left out, i.e. what the service would see. If the
service would still get a literal ``api.key`` (from a config file), the install is refused: the service
definition cannot reference a key file then, because ``api.key`` wins over ``api.key_file``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from localagent.config import LoadedConfig
from localagent.config.model import expand_user
from localagent.errors import ConfigError, ConfigProblem

KEY_FILE_NAME = "api.key"


def service_key_file(
    loaded: LoadedConfig, without_key: LoadedConfig, requested: Path | None, state_dir: Path | None = None
) -> Path | None:
    """Where the key must be written for the service, or None when the service needs no key file.

    The default is ``<state_dir>/api.key``, ``state_dir`` being the service's (see
    :func:`~localagent.install.plan.service_state_dir`), else the config's.
    """
    if without_key.config.api.key is not None:
        source, line = _split_origin(without_key.origins.get("api.key", "config"))
        raise ConfigError(
            [
                ConfigProblem(
                    source,
                    "api.key",
                    "a service must not read a plaintext key from its config: put the key in a file "
                    "(chmod 600) and set api.key_file instead, or remove api.key and pass the key to "
                    "`localagent install` with --key (it is then written to a mode-0600 key file)",
                    line=line,
                )
            ]
        )
    if loaded.config.api.key is None:
        return None  # no key, or api.key_file: the service reads the same file
    path = requested if requested is not None else (state_dir or loaded.config.agent.state_dir) / KEY_FILE_NAME
    try:
        return expand_user(path).absolute()
    except ValueError as exc:
        raise ConfigError([ConfigProblem(source="flag --key-file", key="", message=str(exc))]) from None


def _split_origin(origin: str) -> tuple[str, int | None]:
    """``"agent.toml:5"`` -> ``("agent.toml", 5)``; ``"env LOCALAGENT_API__KEY"`` stays whole."""
    source, sep, line = origin.rpartition(":")
    if sep and line.isdigit():
        return source, int(line)
    return origin, None


def existing_key(path: Path) -> str | None:
    """The key ``path`` holds now (stripped), or ``None`` if there is no such file or it cannot be read."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def write_key_file(path: Path, key: str, owner: tuple[int, int] | None = None) -> None:
    """Write ``key`` to ``path`` with mode 0600 (atomically; missing directories are created with mode 0700).

    With ``owner`` (uid, gid) the file and the directories created for it are given to that user, so that
    a service running as ``--user`` can read a key that root installed.
    """
    try:
        missing = [parent for parent in (path.parent, *path.parent.parents) if not parent.exists()]
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if owner is not None:
            for directory in missing:
                os.chown(directory, *owner)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
                os.fchmod(stream.fileno(), 0o600)  # O_CREAT's mode does not apply to an existing file
                if owner is not None:
                    os.fchown(stream.fileno(), *owner)
                stream.write(key + "\n")
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
    except OSError as exc:
        raise ConfigError(
            [
                ConfigProblem(
                    str(path),
                    "api.key_file",
                    f"cannot write the key file: {exc.strerror or exc}; choose another place with --key-file",
                )
            ]
        ) from exc
