"""The option set of ``localagent run``, declared once and shared by every command that needs it.

Reuse pattern: decorate a typer command with :func:`with_run_options`. The decorator adds every run
option to the command's signature (typer reads ``__signature__``) and hands the command one frozen
:class:`RunOptions` in its ``options`` parameter, so ``run``, ``config show/validate`` and
``install supervisord|systemd`` declare exactly the same flags::

    @app.command("systemd")
    @with_run_options
    def systemd(options: RunOptions, user: str = "") -> None:
        argv = ["localagent", "run", *options.to_argv(absolute=True, include_key=False)]
        # the key goes into the service environment instead, as LOCALAGENT_API__KEY=options.key

:meth:`RunOptions.to_flags` builds the :class:`~localagent.config.FlagOverrides` the loader takes;
:meth:`RunOptions.to_argv` rebuilds an argv that means the same thing (for service files).
This module only imports typer: the config package (pydantic) is imported when a command runs.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from localagent.config import FlagOverrides

PANEL = "Configuration overrides"


@dataclass(frozen=True)
class RunOptions:
    """The parsed run options: config files plus every command-line override."""

    config: tuple[Path, ...] = ()
    name: str | None = None
    label: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    api: tuple[str, ...] = ()
    key: str | None = None
    show_flow_logs: bool = False
    hostname_label: bool | None = None
    no_api_logs: bool = False
    max_polls: int | None = None
    agent_address: str | None = None
    log_level: str | None = None
    import_path: tuple[str, ...] = ()
    working_dir: Path | None = None
    limit: int | None = None
    set: tuple[str, ...] = ()

    def to_flags(self) -> FlagOverrides:
        """The flag source for :func:`localagent.config.load_config`."""
        from localagent.config import FlagOverrides, FlagSetting

        settings = [
            FlagSetting(_OPTIONS[name].key, value, _OPTIONS[name].flag_for(value))
            for name, value in self._named_values()
            if _OPTIONS[name].key
        ]
        return FlagOverrides(
            settings=tuple(settings),
            assignments=self.set,
            labels=self.label,
            env=self.env,
            import_paths=self.import_path,
        )

    def _named_values(self) -> list[tuple[str, Any]]:
        """(option name, config value) for every single-valued option that was given."""
        given: list[tuple[str, Any]] = []
        if self.api:
            given.append(("api", _api_urls(self.api)))
        for spec in _SPECS:
            value = getattr(self, spec.name)
            if spec.repeatable or value is None or (value is False and spec.only_true):
                continue
            if spec.name == "no_api_logs":
                value = not value
            elif isinstance(value, Path):
                value = str(value)
            given.append((spec.name, value))
        return given

    def to_argv(self, absolute: bool = False, include_key: bool = True) -> list[str]:
        """Arguments for ``localagent run`` meaning the same as these options.

        ``absolute`` resolves ``--config``, ``--working-dir`` and ``--import-path`` against the current
        directory (for service files); ``include_key=False`` leaves ``--key`` out (pass it through the
        environment instead, so no secret is written in a file).
        """
        argv: list[str] = []
        for spec in _SPECS:
            value = getattr(self, spec.name)
            if spec.name == "key" and not include_key:
                continue
            if spec.repeatable:
                for item in value:
                    text = str(Path(item).absolute()) if absolute and spec.path else str(item)
                    argv += [spec.flag, text]
            elif isinstance(value, bool):
                if spec.name == "hostname_label":
                    argv.append(spec.flag_for(value))
                elif value:
                    argv.append(spec.flag)
            elif value is not None:
                text = str(Path(value).absolute()) if absolute and spec.path else str(value)
                argv += [spec.flag, text]
        return argv


@dataclass(frozen=True)
class _Spec:
    name: str
    decls: tuple[str, ...]
    annotation: Any
    default: Any
    help: str
    key: str = ""
    repeatable: bool = False
    path: bool = False
    only_true: bool = False
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return self.decls[0].split("/")[0]

    def flag_for(self, value: object) -> str:
        """The flag that gives ``value``: ``--no-hostname-label`` for False of an on/off pair."""
        on, _, off = self.decls[0].partition("/")
        return off if off and value is False else on


_SPECS: tuple[_Spec, ...] = (
    _Spec("config", ("--config", "-c"), list[Path] | None, None,
          "Config file (TOML); repeat to layer files, later ones win. None: built-in defaults.",
          repeatable=True, path=True, metavar="FILE"),
    _Spec("name", ("--name", "-n"), str | None, None, "Agent name (agent.name).", key="agent.name", metavar="NAME"),
    _Spec("label", ("--label", "-l"), list[str] | None, None,
          "Add a label to agent.labels; repeatable.", repeatable=True, metavar="LABEL"),
    _Spec("env", ("--env", "-e"), list[str] | None, None,
          "Add KEY=VALUE to runs.env; repeatable.", repeatable=True, metavar="KEY=VALUE"),
    _Spec("api", ("--api", "-a"), list[str] | None, None,
          "API URL or 'embedded' (api.url); several servers: repeat the flag or separate URLs with commas.",
          key="api.url", repeatable=True, metavar="URL"),
    _Spec("key", ("--key", "-k"), str | None, None, "API key (api.key).", key="api.key", metavar="KEY"),
    _Spec("show_flow_logs", ("--show-flow-logs", "-f"), bool, False,
          "Stream run output to this console (logs.show_flow_logs).", key="logs.show_flow_logs", only_true=True),
    _Spec("hostname_label", ("--hostname-label/--no-hostname-label",), bool | None, None,
          "Also accept this host's name as a label (agent.hostname_label).", key="agent.hostname_label"),
    _Spec("no_api_logs", ("--no-api-logs", "--no-cloud-logs"), bool, False,
          "Do not ship run output to the API (logs.send_to_api = false).", key="logs.send_to_api", only_true=True),
    _Spec("max_polls", ("--max-polls",), int | None, None, "Stop after N polls (agent.max_polls).",
          key="agent.max_polls", metavar="N"),
    _Spec("agent_address", ("--agent-address",), str | None, None,
          "Serve /health and /metrics on HOST:PORT (health.address).", key="health.address", metavar="HOST:PORT"),
    _Spec("log_level", ("--log-level",), str | None, None, "Agent log level (logs.level).", key="logs.level",
          metavar="LEVEL"),
    _Spec("import_path", ("--import-path", "-p"), list[str] | None, None,
          "Prepend to PYTHONPATH of every run (runs.import_paths); repeatable.", repeatable=True, path=True,
          metavar="DIR"),
    _Spec("working_dir", ("--working-dir",), Path | None, None,
          "Working directory for runs that name none (runs.working_dir).", key="runs.working_dir", path=True,
          metavar="DIR"),
    _Spec("limit", ("--limit",), int | None, None, "Runs started at once (agent.max_concurrent_runs).",
          key="agent.max_concurrent_runs", metavar="N"),
    _Spec("set", ("--set",), list[str] | None, None,
          "Set any dotted key: --set runs.stop_grace=1m (value read as TOML, else text); repeatable.",
          repeatable=True, metavar="KEY=VALUE"),
)  # fmt: skip
_OPTIONS = {spec.name: spec for spec in _SPECS}
assert {f.name for f in fields(RunOptions)} == set(_OPTIONS), "RunOptions and _SPECS must list the same options"

_Command = TypeVar("_Command", bound=Callable[..., Any])


def _api_urls(values: tuple[str, ...]) -> str | list[str]:
    """``--api`` given once with one URL is that URL; repeated or with commas it is a list (several servers)."""
    urls = [part.strip() for value in values for part in value.split(",") if part.strip()]
    if len(urls) == 1 and len(values) == 1 and "," not in values[0]:
        return urls[0]
    return urls if urls else ",".join(values)


def run_option_parameters() -> list[inspect.Parameter]:
    """The run options as keyword-only parameters carrying their typer metadata."""
    return [
        inspect.Parameter(
            spec.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=spec.default,
            annotation=Annotated[
                spec.annotation,
                typer.Option(*spec.decls, help=spec.help, rich_help_panel=PANEL, metavar=spec.metavar),
            ],
        )
        for spec in _SPECS
    ]


def with_run_options(command: _Command) -> _Command:
    """Give ``command`` every run option; it receives them as one :class:`RunOptions` in ``options``."""
    signature = inspect.signature(command, eval_str=True)
    own = [param for name, param in signature.parameters.items() if name != "options"]
    clash = {param.name for param in own} & set(_OPTIONS)
    if clash:
        raise TypeError(f"{command.__name__} declares run options itself: {sorted(clash)}")

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name, _OPTIONS[name].default) for name in _OPTIONS}
        for name, value in values.items():
            if _OPTIONS[name].repeatable:
                values[name] = tuple(value or ())
        return command(*args, options=RunOptions(**values), **kwargs)

    own_positional = [p for p in own if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    own_keyword = [p for p in own if p.kind is inspect.Parameter.KEYWORD_ONLY]
    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*own_positional, *own_keyword, *run_option_parameters()]
    )
    wrapper.__annotations__ = {}
    return wrapper  # type: ignore[return-value]
