"""The server's files are its own: the SQLite database (and its -wal/-shm) 0600, a state dir it makes 0700.

The database holds run parameters, output and token hashes. SQLite creates ``-wal`` and ``-shm`` with the
mode of the database file, so creating that file 0600 before SQLite opens it covers all three. Files and
directories that already exist are not changed (an operator may share them on purpose) but a warning says
when others can read them. Usage::

    prepare_sqlite_file(Path("/var/lib/localagent/localagent.db"))
    make_private_dir(state_dir)
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("localagent.server")


def _exposed(path: Path) -> int | None:
    """The mode of ``path`` when its group or others may read (or write) it; None when private or absent."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    return mode if mode & 0o066 else None


def warn_if_exposed(path: Path, what: str) -> bool:
    """Log a warning naming ``path`` when others may read it; True when it warned."""
    mode = _exposed(path)
    if mode is None:
        return False
    log.warning(
        "%s %s has mode %04o: other users of this host can read it; run chmod %s %s",
        what,
        path,
        mode,
        "700" if path.is_dir() else "600",
        path,
    )
    return True


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and its parents) with mode 0700 for the last one; warn if it existed exposed."""
    if path.is_dir():
        warn_if_exposed(path, "the state dir")
        return
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def prepare_sqlite_file(path: Path) -> None:
    """Create the database file 0600 before SQLite does (it would use 0644); warn about exposed ones."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            warn_if_exposed(file, "the database file")
        return
    except OSError:
        return  # SQLite itself reports what is wrong with the path, in its words
    os.close(descriptor)
