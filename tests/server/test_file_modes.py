"""The server's files are private: a new SQLite database and its -wal/-shm are 0600, a state dir it makes
is 0700, and an existing exposed one gets a warning; a blank ``--api-key`` is refused."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from localagent.errors import ServiceError
from localagent.server.database import Database
from localagent.server.runner import ServerThread
from localagent.server.tables import flows


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_database_and_its_wal_and_shm_are_0600(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)  # the usual umask, which would give 0644
    try:
        database = Database(f"sqlite:///{tmp_path / 'la.db'}")
        with database.begin() as conn:  # a write, so -wal and -shm exist
            conn.execute(sa.insert(flows).values(name="f", version=1, spec="{}", created=datetime.now(timezone.utc)))
        files = sorted(path.name for path in tmp_path.iterdir())
        modes = {path.name: _mode(path) for path in tmp_path.iterdir()}
        database.dispose()
    finally:
        os.umask(old_umask)
    assert files == ["la.db", "la.db-shm", "la.db-wal"]
    assert modes == {"la.db": 0o600, "la.db-shm": 0o600, "la.db-wal": 0o600}


def test_an_exposed_database_is_used_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "shared.db"
    Database(f"sqlite:///{path}").dispose()
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="localagent.server"):
        Database(f"sqlite:///{path}").dispose()
    assert f"the database file {path} has mode 0644: other users of this host can read it" in caplog.text
    assert _mode(path) == 0o644  # the operator's choice is not changed behind their back


def _server(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(state)}
    command = [sys.executable, "-m", "localagent.cli.main", "server", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)


def test_the_state_dir_the_server_makes_is_0700(tmp_path: Path) -> None:
    done = _server(tmp_path / "state", "--upgrade-only")
    assert done.returncode == 0, done.stderr
    state_dir = tmp_path / "state" / "localagent"
    assert _mode(state_dir) == 0o700
    assert _mode(state_dir / "localagent.db") == 0o600
    assert "has mode" not in done.stderr


def test_an_exposed_state_dir_gets_a_warning(tmp_path: Path) -> None:
    state_dir = tmp_path / "state" / "localagent"
    state_dir.mkdir(parents=True)
    state_dir.chmod(0o755)
    done = _server(tmp_path / "state", "--upgrade-only")
    assert done.returncode == 0, done.stderr
    assert f"the state dir {state_dir} has mode 0755: other users of this host can read it; run chmod 700" in (
        done.stderr
    )
    assert _mode(state_dir / "localagent.db") == 0o600


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (["--api-key", ""], "--api-key (the first one): a blank key is not a key"),
        (["--api-key", "k", "--api-key", "   "], "--api-key (the second one): a blank key is not a key"),
        (["--api-key", " k"], "--api-key (the first one): a key cannot start or end with whitespace"),
    ],
)
def test_a_blank_api_key_is_refused(tmp_path: Path, keys: list[str], message: str) -> None:
    done = _server(tmp_path / "state", "--address", "127.0.0.1:0", *keys)
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "state").exists()  # refused before anything was made


def test_a_blank_key_is_refused_in_process_too(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="an API key must not be blank"):
        ServerThread(address="127.0.0.1:0", database_url=f"sqlite:///{tmp_path / 'a.db'}", api_keys=("",))
