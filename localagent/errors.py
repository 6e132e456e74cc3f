"""Every error localagent raises on purpose.

The tree::

    LocalAgentError                 base; the CLI prints "<ClassName>: <message>" and exits 1
    ├── ConfigError                 a config file, variable or flag is wrong (carries every problem)
    ├── ApiError                    talking to the orchestration API went wrong
    │   ├── ApiUnavailable          could not reach it (connection refused, timeout, DNS)
    │   └── ApiRejected             it answered 4xx/5xx; carries the status code and its message
    │       ├── ApiNotFound         404
    │       ├── ApiUnauthorized     401/403
    │       └── ApiConflict         409 (for example an illegal state transition)
    ├── LaunchError                 a flow run could not be started on this host
    ├── StorageError                the server's database refused an operation
    └── ServiceError                a port in use, a state dir that cannot be written, ...

Library code raises these; only ``localagent.cli`` prints them and picks the exit code. Foreign
exceptions (requests, sqlite, OS errors) are translated where they are caught, once, raised ``from``
the cause.
"""

from __future__ import annotations

from dataclasses import dataclass


def escape_controls(text: str) -> str:
    """``text`` with every control, format (bidi overrides, zero-width) and unpaired surrogate character
    written as an escape (``\\x00``, ``\\n``, ``\\u202e``), so an echoed value can never move the cursor,
    reorder what a terminal shows or forge a new line.
    """
    if text.isprintable():
        return text
    out: list[str] = []
    for char in text:
        if char.isprintable():  # False for controls (Cc), format (Cf: bidi), surrogates, separators
            out.append(char)
        elif char in _NAMED_ESCAPES:
            out.append(_NAMED_ESCAPES[char])
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return "".join(out)


_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


class LocalAgentError(Exception):
    """Base of every error localagent raises on purpose."""

    exit_code = 1


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the configuration, located as precisely as we can.

    ``source`` is a file path, ``env LOCALAGENT_X__Y``, ``flag --set`` or ``default``; ``line`` is set
    for files when the key (or the syntax error) could be located.
    """

    source: str
    key: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = escape_controls(self.source)
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        if self.key:
            return f"{where}: {escape_controls(self.key)}: {escape_controls(self.message)}"
        return f"{where}: {escape_controls(self.message)}"


class ConfigError(LocalAgentError):
    """The configuration is invalid. ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: list[ConfigProblem] | str, omitted: int = 0) -> None:
        if isinstance(problems, str):
            problems = [ConfigProblem(source="config", key="", message=problems)]
        self.problems: list[ConfigProblem] = problems
        self.count = len(problems) + omitted  # problems found; past a hundred only the first are listed
        lines = [str(p) for p in problems]
        if omitted:
            lines.append(self.omitted_line(omitted, len(problems)))
        super().__init__("\n".join(lines))

    @staticmethod
    def omitted_line(omitted: int, shown: int) -> str:
        return f"... and {omitted:,} more problem{'s' if omitted != 1 else ''} (the first {shown} are shown)"


class ApiError(LocalAgentError):
    """Talking to the orchestration API went wrong."""


class ApiUnavailable(ApiError):
    """The API could not be reached (refused, timed out, name not resolved)."""


class ApiRejected(ApiError):
    """The API answered with an error status."""

    def __init__(self, status_code: int, message: str) -> None:
        self.status_code = status_code
        self.detail = message
        super().__init__(message)


class ApiNotFound(ApiRejected):
    """404: the named flow, run or agent does not exist."""


class ApiUnauthorized(ApiRejected):
    """401/403: missing, wrong or insufficient API key or run token."""


class ApiConflict(ApiRejected):
    """409: the request conflicts with the current state (e.g. an illegal state transition)."""


class LaunchError(LocalAgentError):
    """A flow run could not be started on this host (missing working dir, command not found, ...)."""


class StorageError(LocalAgentError):
    """The server's database refused an operation."""


class ServiceError(LocalAgentError):
    """A local service could not start: a port in use, a state dir that cannot be written, ..."""

    exit_code = 3
