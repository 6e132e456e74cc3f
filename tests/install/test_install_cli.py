"""`localagent install supervisord|systemd` through the installed binary, as a user runs it."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.install.support import localagent, systemd_argv, unit_fields

KEY = "sk-very-secret-0123456789"
KINDS = ["supervisord", "systemd"]


@pytest.fixture
def agent_toml(tmp_path: Path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text('[agent]\nname = "etl-1"\n\n[runs]\ndrain_timeout = "2m"\nstop_grace = "15s"\n')
    return path


def command_of(kind: str, text: str) -> list[str]:
    fields = unit_fields(text)
    if kind == "systemd":
        return systemd_argv(fields["ExecStart"][0])
    return shlex.split(fields["command"][0].replace("%%", "%"))


@pytest.mark.parametrize("kind", KINDS)
def test_command_runs_the_absolute_binary_with_the_same_options(kind: str, tmp_path: Path, agent_toml: Path) -> None:
    result = localagent(
        "install", kind, "-c", "agent.toml", "--label", "gpu box", "-e", "TZ=UTC", "-p", "lib", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    argv = command_of(kind, result.stdout)

    assert Path(argv[0]).is_absolute() and Path(argv[0]).name == "localagent"
    assert argv[1:5] == ["run", "--config", str(agent_toml), "--label"]
    assert argv[argv.index("--env") : argv.index("--env") + 2] == ["--env", "TZ=UTC"]
    assert str(tmp_path / "lib") in argv
    assert f"agent.state_dir={tmp_path / 'state' / 'localagent'}" in argv  # pinned: it came from $HOME
    fields = unit_fields(result.stdout)
    timeout = fields["stopwaitsecs" if kind == "supervisord" else "TimeoutStopSec"]
    assert timeout == [str(120 + 15 + 45)]
    assert (fields["directory"] if kind == "supervisord" else fields["WorkingDirectory"]) == [str(tmp_path)]


@pytest.mark.parametrize("kind", KINDS)
def test_a_key_goes_to_a_private_key_file_never_into_the_definition(
    kind: str, tmp_path: Path, agent_toml: Path
) -> None:
    result = localagent(
        "install", kind, "-c", "agent.toml", "--key", KEY, "--set", f"api.key={KEY}", "-o", "svc.conf", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "svc.conf").read_text()
    key_file = tmp_path / "state" / "localagent" / "api.key"
    assert KEY not in text and KEY not in result.stdout
    assert key_file.read_text().strip() == KEY
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert f"api.key_file={key_file}" in command_of(kind, text)
    assert "--key" not in command_of(kind, text)
    assert str(key_file) in result.stderr


def test_a_key_from_the_environment_is_not_passed_on(tmp_path: Path, agent_toml: Path) -> None:
    key_file = tmp_path / "secrets" / "agent.key"
    result = localagent(
        "install", "systemd", "-c", "agent.toml", "--key-file", str(key_file), "-o", "agent.service", cwd=tmp_path,
        env={"LOCALAGENT_API__KEY": KEY, "LOCALAGENT_AGENT__POLL_INTERVAL": "3s"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "agent.service").read_text()
    assert KEY not in text
    assert key_file.read_text().strip() == KEY
    environment = unit_fields(text)["Environment"]
    assert '"LOCALAGENT_AGENT__POLL_INTERVAL=3s"' in environment
    assert not any("LOCALAGENT_API__KEY" in item for item in environment)


def test_a_plaintext_key_in_a_config_file_is_refused_with_advice(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text('[agent]\nname = "a"\n\n[api]\nkey = "in-the-file"\n')
    result = localagent("install", "supervisord", "-c", "agent.toml", "--key", KEY, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("agent.toml:5: api.key: a service must not read a plaintext key")
    assert "api.key_file" in result.stderr
    assert not (tmp_path / "state" / "localagent" / "api.key").exists()


def test_an_existing_key_file_is_referenced_as_configured(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(KEY)
    (tmp_path / "agent.toml").write_text('[api]\nkey_file = "key"\n')
    result = localagent("install", "systemd", "-c", "agent.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert KEY not in result.stdout
    assert not any(arg.startswith("api.key_file") for arg in command_of("systemd", result.stdout))


@pytest.mark.parametrize("kind", KINDS)
def test_config_errors_are_reported_as_config_validate_reports_them(kind: str, tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text("[agent]\nmax_concurrent_runs = -1\n")
    validate = localagent("config", "validate", "-c", "agent.toml", cwd=tmp_path)
    result = localagent("install", kind, "-c", "agent.toml", "-o", "out.conf", cwd=tmp_path)
    assert result.returncode == validate.returncode == 1
    assert result.stderr == validate.stderr
    assert "agent.toml:2: agent.max_concurrent_runs: must be >= 0" in result.stderr
    assert not (tmp_path / "out.conf").exists()


def test_a_value_supervisord_cannot_hold_is_refused(tmp_path: Path, agent_toml: Path) -> None:
    result = localagent("install", "supervisord", "-c", "agent.toml", "--label", "a ;b", cwd=tmp_path)
    assert result.returncode == 1
    assert "comment" in result.stderr


def test_a_bad_service_name_is_a_usage_error(tmp_path: Path, agent_toml: Path) -> None:
    result = localagent("install", "systemd", "-c", "agent.toml", "--service-name", "a/b", cwd=tmp_path)
    assert result.returncode == 2
    assert "--service-name" in result.stderr


def test_variables_the_service_will_lack_are_warned_about(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text('[agent]\nname = "${SITE_NAME}"\n')
    result = localagent("install", "systemd", "-c", "agent.toml", cwd=tmp_path, env={"SITE_NAME": "x"})
    assert result.returncode == 0, result.stderr
    assert "warning: in the service's environment:" in result.stderr
    assert "SITE_NAME" in result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed on this host")
def test_the_generated_unit_passes_systemd_analyze_verify(tmp_path: Path, agent_toml: Path) -> None:
    unit = tmp_path / "localagent-etl-1.service"
    result = localagent(
        "install", "systemd", "-c", "agent.toml", "--key", KEY, "-l", "50% off", "--user", "root", "-o", str(unit),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert KEY not in unit.read_text()
    verify = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False, timeout=60
    )
    assert verify.returncode == 0, verify.stderr
    assert unit.name not in verify.stderr, verify.stderr


def test_secret_looking_run_variables_written_in_clear_are_warned_about(tmp_path: Path, agent_toml: Path) -> None:
    result = localagent(
        "install", "systemd", "-c", "agent.toml", "-e", "TZ=UTC", "-e", "DB_PASSWORD=hunter2",
        "--set", "runs.env.API_TOKEN=t0k", cwd=tmp_path, env={"LOCALAGENT_RUNS__ENV__S3_SECRET": "s3"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    warning = next(line for line in result.stderr.splitlines() if "in clear text" in line)
    for shown in ("--env DB_PASSWORD=...", "--set runs.env.API_TOKEN=...", "LOCALAGENT_RUNS__ENV__S3_SECRET"):
        assert shown in warning
    assert "TZ" not in warning and "hunter2" not in result.stderr
    quiet = localagent("install", "systemd", "-c", "agent.toml", "-e", "TZ=UTC", cwd=tmp_path)
    assert "in clear text" not in quiet.stderr


@pytest.mark.parametrize("kind", KINDS)
def test_printing_writes_nothing_not_even_the_key_file(kind: str, tmp_path: Path, agent_toml: Path) -> None:
    key_file = tmp_path / "keys" / "api.key"
    result = localagent("install", kind, "-c", "agent.toml", "--key", KEY, "--key-file", str(key_file), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"api.key_file={key_file}" in command_of(kind, result.stdout)
    assert not key_file.exists() and not key_file.parent.exists()
    assert not (tmp_path / "state").exists()
    assert f"printed only, nothing written: with -o FILE the API key also goes to {key_file}" in result.stderr


def test_a_different_key_over_an_existing_key_file_needs_force(tmp_path: Path, agent_toml: Path) -> None:
    key_file = tmp_path / "api.key"
    key_file.write_text("sk-the-running-service-key\n")
    args = ("install", "systemd", "-c", "agent.toml", "--key-file", str(key_file), "-o", "agent.service")
    refused = localagent(*args, "--key", KEY, cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"{key_file}: api.key_file: holds a different key, which a running service")
    assert key_file.read_text() == "sk-the-running-service-key\n"
    assert not (tmp_path / "agent.service").exists()
    same = localagent(*args, "--key", "sk-the-running-service-key", cwd=tmp_path)
    assert same.returncode == 0 and "already holds this key" in same.stderr
    forced = localagent(*args, "--key", KEY, "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert key_file.read_text().strip() == KEY


def test_user_gets_the_state_dir_of_its_own_home(tmp_path: Path, agent_toml: Path) -> None:
    import pwd

    account = pwd.getpwuid(os.geteuid() if os.geteuid() != 0 else 1)  # another account when run as root
    home = Path(account.pw_dir)
    result = localagent("install", "systemd", "-c", "agent.toml", "--user", account.pw_name, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    argv = command_of("systemd", result.stdout)
    assert f"agent.state_dir={home / '.local' / 'state' / 'localagent'}" in argv
    assert unit_fields(result.stdout)["User"] == [account.pw_name]
    assert f"state dir for user {account.pw_name}: {home / '.local' / 'state' / 'localagent'}" in result.stderr
    explicit = localagent(
        "install", "systemd", "-c", "agent.toml", "--user", account.pw_name, "--set", "agent.state_dir=/srv/la",
        cwd=tmp_path,
    )  # fmt: skip
    assert explicit.returncode == 0, explicit.stderr
    state_dirs = [arg for arg in command_of("systemd", explicit.stdout) if arg.startswith("agent.state_dir=")]
    assert state_dirs == ["agent.state_dir=/srv/la"]
    assert "state dir for user" not in explicit.stderr


def test_an_unknown_user_is_refused_with_advice(tmp_path: Path, agent_toml: Path) -> None:
    result = localagent("install", "supervisord", "-c", "agent.toml", "--user", "no-such-user-xyz", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("flag --user: no user 'no-such-user-xyz' on this host")
    assert "agent.state_dir" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_root_gives_the_key_file_to_the_service_user(tmp_path: Path, agent_toml: Path) -> None:
    import pwd

    account = pwd.getpwnam("daemon")
    key_file = tmp_path / "keys" / "api.key"
    result = localagent(
        "install", "systemd", "-c", "agent.toml", "--user", "daemon", "--key", KEY, "--key-file", str(key_file),
        "-o", "agent.service", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (key_file.stat().st_uid, key_file.parent.stat().st_uid) == (account.pw_uid, account.pw_uid)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
