"""The agent's configuration: one frozen model, built once per load and handed down.

Usage::

    config = AgentConfig.model_validate({"agent": {"labels": ["etl"]}})
    config.agent.labels  # ('etl',)

A reload builds a new ``AgentConfig`` and swaps it in; nothing ever mutates one.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from localagent.config.units import Duration, Size

MAX_CONCURRENT_RUNS = 1000
"""One claim asks for at most this many runs (``ClaimRequest.slots`` on the wire)."""

MAX_POLL_INTERVAL = 300.0
"""The poll interval is also the claim's long-poll window, which the API caps at 5 minutes."""

MAX_API_TIMEOUT = 3600.0
"""Per request; beyond an hour a dead connection would hold the agent for longer than anyone waits."""

MAX_STOP_GRACE = 86400.0
MAX_DRAIN_TIMEOUT = 7 * 86400.0
"""Both end up in timers and in the service manager's stop timeout (systemd TimeoutStopSec)."""

MAX_DB_CONNECTIONS = 1000
"""PostgreSQL's own max_connections is rarely above a few hundred."""

MAX_POLLS = 1_000_000_000
MAX_RUN_OUTPUT = 1 << 40  # 1 TiB: larger is no cap in practice; 0 means no cap
MAX_AGENT_NAME = 200  # what the API takes (AgentRegister.name)


def refuse_nul(value: object) -> object:
    """A NUL cannot pass through a path, an environment variable, a command line or PostgreSQL."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain a NUL character (\\x00)")
    return value


def _env_name(name: object) -> object:
    if isinstance(name, str) and (not name or "=" in name or "\x00" in name):
        raise ValueError(f"an environment variable name must be non-empty, without '=' or NUL, got {name!r}")
    return name


Text = Annotated[str, BeforeValidator(refuse_nul)]
EnvName = Annotated[str, BeforeValidator(_env_name)]
TextPath = Annotated[Path, BeforeValidator(refuse_nul)]


def api_key_problem(key: str) -> str | None:
    """Why ``key`` cannot be sent as a Bearer key (blank, spaces or controls, non-ASCII), else ``None``."""
    if not key.strip():
        return "must not be empty"
    if not all("!" <= char <= "~" for char in key):
        return "must be printable ASCII without spaces or control characters (it is sent in an HTTP header)"
    return None


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/localagent``, else ``~/.local/state/localagent``."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "localagent"


def expand_user(path: Path) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded; a ValueError (not a RuntimeError) when it cannot be."""
    try:
        return path.expanduser()
    except RuntimeError:
        raise ValueError(f"cannot expand {str(path)!r}: no home directory for that user") from None


def parse_address(value: str) -> tuple[str, int]:
    """``"127.0.0.1:4300"`` -> ``("127.0.0.1", 4300)``; ``"[::1]:80"`` works too."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT like '127.0.0.1:4300', got {value!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be 0..65535, got {port}")
    return host.strip("[]"), port


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AgentSection(_Section):
    """``[agent]``: who this agent is and which runs it takes."""

    name: Text = Field(
        default_factory=socket.gethostname,
        min_length=1,
        max_length=MAX_AGENT_NAME,
        description="agent name shown by the API",
    )
    labels: tuple[Text, ...] = Field(default=(), description="labels this agent accepts")
    hostname_label: bool = Field(default=True, description="also accept this host's name as a label")
    run_unlabeled: bool = Field(default=False, description="also take runs that have no labels")
    max_concurrent_runs: int = Field(
        default=0, ge=0, le=MAX_CONCURRENT_RUNS, description="runs started at once; 0 means no cap"
    )
    max_polls: int = Field(default=0, ge=0, le=MAX_POLLS, description="stop after this many polls; 0 means forever")
    poll_interval: Duration = Field(
        default=10.0,
        gt=0,
        le=MAX_POLL_INTERVAL,
        description="longest wait between polls (long-poll window and back-off cap)",
    )
    state_dir: TextPath = Field(
        default_factory=default_state_dir, description="spool, run logs and the embedded database"
    )

    @field_validator("labels")
    @classmethod
    def _labels_not_blank(cls, labels: tuple[str, ...]) -> tuple[str, ...]:
        for label in labels:
            if not label.strip():
                raise ValueError("labels must not be empty strings")
        return tuple(dict.fromkeys(labels))

    @field_validator("state_dir")
    @classmethod
    def _expand_state_dir(cls, path: Path) -> Path:
        return expand_user(path)

    def effective_labels(self) -> tuple[str, ...]:
        """The labels used for claims: ``labels`` plus the host name when ``hostname_label``."""
        if self.hostname_label:
            return tuple(dict.fromkeys((*self.labels, socket.gethostname())))
        return self.labels


class ApiSection(_Section):
    """``[api]``: where the orchestration API is and how to authenticate."""

    kind: Literal["localagent", "prefect"] = Field(
        default="localagent",
        description="'localagent' (its own API, embedded or remote) or 'prefect' (serve a Prefect 3 work pool)",
    )
    url: str | tuple[str, ...] = Field(
        default="embedded",
        validate_default=True,
        description=(
            "'embedded' hosts the API in this process; else http(s)://host:port, or a list of such URLs "
            "(servers sharing one database: the agent fails over between them)"
        ),
    )
    key: SecretStr | None = Field(default=None, description="API key (literal or ${VAR})")
    key_file: TextPath | None = Field(default=None, description="file holding the API key; re-read on reload")
    timeout: Duration = Field(default=10.0, gt=0, le=MAX_API_TIMEOUT, description="per-request timeout")
    failback_interval: Duration = Field(
        default=30.0,
        gt=0,
        le=MAX_API_TIMEOUT,
        description="with several api.url: how often to check if the first URL answers again while another is used",
    )

    @property
    def urls(self) -> tuple[str, ...]:
        """The API's URLs (one for a single url; ``("embedded",)`` for the embedded API)."""
        return (self.url,) if isinstance(self.url, str) else self.url

    @field_validator("key")
    @classmethod
    def _usable_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None:
            problem = api_key_problem(key.get_secret_value())
            if problem is not None:
                raise ValueError(
                    problem + (" (to use no key, leave api.key and --key out)" if problem.endswith("empty") else "")
                )
        return key

    @field_validator("url", mode="before")
    @classmethod
    def _url_shape(cls, url: object, info: ValidationInfo) -> object:
        if isinstance(url, (list, tuple)):
            return _url_list(url, info.data.get("kind"))
        if not isinstance(url, str):
            raise ValueError(f"expected 'embedded', an http(s)://host:port URL or a list of such URLs, got {url!r}")
        url = url.strip()
        if url == "embedded":
            if info.data.get("kind") == "prefect":
                raise ValueError(
                    "api.kind is 'prefect': set api.url to the Prefect API, e.g. http://127.0.0.1:4200/api"
                )
            return url
        return _http_url(url, "expected 'embedded' or an http(s)://host:port URL")

    @field_validator("key_file")
    @classmethod
    def _expand_key_file(cls, path: Path | None) -> Path | None:
        return expand_user(path) if path is not None else None


def _http_url(url: str, expected: str) -> str:
    if (
        not url.startswith(("http://", "https://"))
        or len(url.split("://", 1)[1].strip("/")) == 0
        or any(char.isspace() for char in url)
    ):
        raise ValueError(f"{expected}, got {url!r}")
    return url.rstrip("/")


def _url_list(urls: list[object] | tuple[object, ...], kind: object) -> tuple[str, ...]:
    """A list of server URLs: http(s) only, no 'embedded', no repeats, only for localagent's own API."""
    if kind == "prefect":
        raise ValueError("a list of URLs is only for api.kind = 'localagent'; a Prefect API takes one URL")
    if not urls:
        raise ValueError("the list of URLs is empty: give at least one http(s)://host:port URL")
    seen: list[str] = []
    for item in urls:
        if not isinstance(item, str):
            raise ValueError(f"each URL in the list must be a string, got {item!r}")
        text = item.strip()
        if text == "embedded":
            raise ValueError("'embedded' cannot be in a list of URLs (a list names servers: http(s)://host:port)")
        url = _http_url(text, "expected an http(s)://host:port URL in the list")
        if url in seen:
            raise ValueError(f"{url!r} is listed twice")
        seen.append(url)
    return tuple(seen)


class ServerSection(_Section):
    """``[server]``: the embedded API (used when ``api.url = "embedded"``)."""

    address: Text = Field(default="127.0.0.1:4300", description="where the embedded API listens (HOST:PORT)")
    database: Text | None = Field(
        default=None, description="SQLAlchemy URL of the embedded API's storage; default SQLite in state_dir"
    )
    db_pool_size: int = Field(
        default=20,
        ge=1,
        le=MAX_DB_CONNECTIONS,
        description="database connections the embedded API keeps open (PostgreSQL: plus 1 for LISTEN)",
    )
    db_max_overflow: int = Field(
        default=20, ge=0, le=MAX_DB_CONNECTIONS, description="extra connections opened under load beyond db_pool_size"
    )
    db_prepared_statements: bool = Field(
        default=True,
        description="PostgreSQL: let the driver prepare repeated statements (false behind PgBouncer < 1.21 "
        "in transaction pooling mode)",
    )

    @field_validator("address")
    @classmethod
    def _address_shape(cls, address: str) -> str:
        parse_address(address)
        return address


class RunsSection(_Section):
    """``[runs]``: how every flow run's process is set up and stopped."""

    env: dict[EnvName, Text] = Field(default_factory=dict, description="environment added to every run")
    inherit_env: bool = Field(default=True, description="pass the agent's own environment to runs")
    working_dir: TextPath | None = Field(default=None, description="working directory for runs that name none")
    import_paths: tuple[Text, ...] = Field(default=(), description="prepended to PYTHONPATH of every run")
    stop_signal: str = Field(default="SIGTERM", description="first signal on cancel, timeout or shutdown")
    stop_grace: Duration = Field(default=30.0, le=MAX_STOP_GRACE, description="then SIGKILL to the whole process group")
    drain_timeout: Duration = Field(
        default=300.0, le=MAX_DRAIN_TIMEOUT, description="on shutdown, how long running runs may finish"
    )
    on_api_lost: Literal["keep", "stop"] = Field(
        default="keep",
        description="when the API has been unreachable for api_lost_after: 'keep' running the runs, or 'stop' "
        "them (stop_signal, stop_grace, SIGKILL; reported Crashed once the API is back)",
    )
    api_lost_after: Duration = Field(
        default=60.0,
        gt=0,
        le=MAX_DRAIN_TIMEOUT,
        description="how long without any answer from the API before it counts as lost",
    )

    @field_validator("on_api_lost", mode="before")
    @classmethod
    def _lower_policy(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("stop_signal")
    @classmethod
    def _known_signal(cls, name: str) -> str:
        normalized = name.strip().upper()
        if not normalized.startswith("SIG"):
            normalized = "SIG" + normalized
        if not hasattr(signal.Signals, normalized) or normalized in ("SIGKILL", "SIGSTOP"):
            raise ValueError(f"expected a signal name like 'SIGTERM' or 'SIGINT', got {name!r}")
        return normalized

    @field_validator("working_dir")
    @classmethod
    def _expand_working_dir(cls, path: Path | None) -> Path | None:
        return expand_user(path) if path is not None else None


class LogsSection(_Section):
    """``[logs]``: run output and the agent's own log."""

    show_flow_logs: bool = Field(default=False, description="stream each run's output to the agent console")
    send_to_api: bool = Field(default=True, description="ship each run's output to the API")
    max_run_output: Size = Field(
        default=64 * 1024 * 1024, le=MAX_RUN_OUTPUT, description="per-run cap; head and tail are kept; 0 is no cap"
    )
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", description="agent log level"
    )
    format: Literal["text", "json"] = Field(default="text", description="agent log format")

    @field_validator("level", mode="before")
    @classmethod
    def _upper_level(cls, level: object) -> object:
        return level.strip().upper() if isinstance(level, str) else level


class HealthSection(_Section):
    """``[health]``: the agent's own /health and /metrics endpoint."""

    address: Text = Field(default="", description="serve /health and /metrics here (HOST:PORT); empty is off")

    @field_validator("address")
    @classmethod
    def _address_shape(cls, address: str) -> str:
        if address:
            parse_address(address)
        return address


class PrefectSection(_Section):
    """``[prefect]``: the Prefect 3 work pool served when ``api.kind = "prefect"``."""

    work_pool: Text = Field(default="", description="the work pool to serve (prefect worker start --pool)")
    work_queues: tuple[Text, ...] = Field(
        default=(), description="queues of the pool to take runs from; empty takes every queue (--work-queue)"
    )
    create_pool_if_missing: bool = Field(
        default=True, description="create the pool (type process) when it does not exist"
    )
    command: tuple[Text, ...] = Field(
        default=("python", "-m", "prefect.engine"),
        min_length=1,
        description="argv that starts a flow run when its deployment sets no command; needs prefect importable",
    )
    auth: Literal["bearer", "basic"] = Field(
        default="bearer",
        description="how api.key is sent: 'bearer' (an API key, Prefect Cloud) or 'basic' (user:password of a "
        "server with PREFECT_SERVER_API_AUTH_STRING)",
    )
    forward_output: bool = Field(default=False, description="also send each run's raw output to the run's Prefect logs")
    query_interval: Duration = Field(
        default=2.0,
        gt=0,
        le=MAX_POLL_INTERVAL,
        description="how often to look for due runs when the event stream is not available",
    )
    use_events: bool = Field(
        default=True, description="follow the server's event stream for new and cancelled runs (faster pickup)"
    )
    heartbeat_interval: Duration = Field(
        default=30.0, gt=0, le=MAX_POLL_INTERVAL, description="worker heartbeat period shown in Prefect"
    )

    @field_validator("work_pool")
    @classmethod
    def _pool_not_blank(cls, pool: str) -> str:
        return pool.strip()

    @field_validator("work_queues")
    @classmethod
    def _queues_not_blank(cls, queues: tuple[str, ...]) -> tuple[str, ...]:
        if any(not queue.strip() for queue in queues):
            raise ValueError("work queue names must not be empty strings")
        return tuple(dict.fromkeys(queue.strip() for queue in queues))


class AgentConfig(_Section):
    """The whole agent configuration (every TOML table)."""

    agent: AgentSection = Field(default_factory=AgentSection)
    api: ApiSection = Field(default_factory=ApiSection)
    server: ServerSection = Field(default_factory=ServerSection)
    runs: RunsSection = Field(default_factory=RunsSection)
    logs: LogsSection = Field(default_factory=LogsSection)
    health: HealthSection = Field(default_factory=HealthSection)
    prefect: PrefectSection = Field(default_factory=PrefectSection)

    @field_validator("prefect")
    @classmethod
    def _prefect_needs_a_pool(cls, prefect: PrefectSection, info: ValidationInfo) -> PrefectSection:
        api = info.data.get("api")
        if isinstance(api, ApiSection) and api.kind == "prefect" and not prefect.work_pool:
            raise ValueError("api.kind is 'prefect': set prefect.work_pool to the work pool to serve")
        return prefect

    def database_url(self) -> str:
        """The embedded API's storage URL, defaulting to a SQLite file in ``agent.state_dir``."""
        if self.server.database:
            return self.server.database
        return f"sqlite:///{self.agent.state_dir / 'localagent.db'}"
