"""The supervisord renderer, read back by supervisord's own config parser."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from supervisor.datatypes import RestartWhenExitUnexpected  # type: ignore[import-untyped]
from supervisor.options import ServerOptions  # type: ignore[import-untyped]

from localagent.errors import ConfigError
from localagent.install import ServicePlan, render_supervisord

TRICKY_ARGS = [
    "a b",
    "it's",
    'say "hi"',
    "100%",
    "%(here)x",
    "$HOME",
    "a#b",
    "a;b",
    "tab\there",
    "ünïcødé",
    "",
    "--set=runs.env.X='q'",
    "back\\slash",
]
TRICKY_ENV = [
    ("PLAIN", "value"),
    ("SPACES", "a b  c"),
    ("COMMAS", "a,b=c"),
    ("PERCENT", "50%"),
    ("SINGLE", "it's"),
    ("DOUBLE", 'say "hi" now'),
    ("COLONS", "/usr/bin:/bin"),
    ("EMPTY", ""),
    ("DOLLAR", "$HOME and ${X}"),
]


def plan_with(tmp_path: Path, **changes: object) -> ServicePlan:
    values: dict[str, object] = {
        "name": "localagent-test",
        "description": "localagent agent test",
        "argv": ("/opt/venv/bin/localagent", "run", "--config", str(tmp_path / "agent.toml")),
        "working_dir": tmp_path,
        "environment": (),
        "stop_timeout": 75,
    }
    values.update(changes)
    return ServicePlan(**values)  # type: ignore[arg-type]


def parse(tmp_path: Path, program: str) -> ServerOptions:
    """Load ``program`` the way supervisord does: a main config that includes it."""
    (tmp_path / "program.conf").write_text(program, encoding="utf-8")
    main = tmp_path / "supervisord.conf"
    main.write_text(
        f"[supervisord]\nlogfile={tmp_path}/supervisord.log\npidfile={tmp_path}/supervisord.pid\n"
        f"childlogdir={tmp_path}\n[include]\nfiles={tmp_path}/program.conf\n",
        encoding="utf-8",
    )
    options = ServerOptions()
    options.realize(args=["-c", str(main)])
    return options


def test_every_setting_reads_back(tmp_path: Path) -> None:
    argv = ("/opt/venv/bin/localagent", "run", *TRICKY_ARGS)
    text = render_supervisord(plan_with(tmp_path, argv=argv, environment=tuple(TRICKY_ENV), user="root"))
    options = parse(tmp_path, text)

    [group] = options.process_group_configs
    [program] = group.process_configs
    assert group.name == "localagent-test"
    assert shlex.split(program.command) == list(argv)
    assert program.environment == dict(TRICKY_ENV)
    assert program.directory == str(tmp_path)
    assert program.uid == 0
    assert program.stopsignal == 15
    assert program.stopwaitsecs == 75
    assert program.stopasgroup is False
    assert program.killasgroup is True
    assert program.autorestart is RestartWhenExitUnexpected
    assert program.exitcodes == [0, 130, 143]
    assert program.redirect_stderr is True


def test_a_directory_with_percent_and_spaces_reads_back(tmp_path: Path) -> None:
    odd = tmp_path / "100% a b"
    odd.mkdir()
    options = parse(tmp_path, render_supervisord(plan_with(tmp_path, working_dir=odd)))
    assert options.process_group_configs[0].process_configs[0].directory == str(odd)


@pytest.mark.parametrize(
    ("argv", "environment", "reason"),
    [
        (("/x", "a ;b"), (), "comment"),
        (("/x", "a #b"), (), "comment"),
        (("/x", "two\nlines"), (), "line break"),
        (("/x",), (("V", "a ;b"),), "comment"),
        (("/x",), (("V", "both ' and \""),), "both"),
        (("/x",), (("V", "'quoted'"),), "strips quotes"),
        (("/x",), (("BAD-NAME", "v"),), "letters, digits"),
    ],
)
def test_values_supervisord_would_misread_are_refused(
    tmp_path: Path, argv: tuple[str, ...], environment: tuple[tuple[str, str], ...], reason: str
) -> None:
    with pytest.raises(ConfigError, match=reason):
        render_supervisord(plan_with(tmp_path, argv=argv, environment=environment))
