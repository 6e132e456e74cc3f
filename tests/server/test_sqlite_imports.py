"""A SQLite server (the embedded default) must work without the ``postgres`` extra installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_PROGRAM = """
import sys
from localagent.server.services import Services
from localagent.server.settings import ServerSettings

services = Services.build(ServerSettings(database_url="sqlite:///" + sys.argv[1]))
assert services.wakeups is None
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ("psycopg", "psycopg_binary"))
print("loaded:", loaded)
"""


def test_sqlite_server_never_imports_psycopg(tmp_path: Path) -> None:
    # A fresh interpreter: the test process may already hold psycopg from the PostgreSQL tests.
    result = subprocess.run(
        [sys.executable, "-c", _PROGRAM, str(tmp_path / "la.db")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "loaded: []"
