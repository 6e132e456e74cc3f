"""Probes of child processes through /proc."""

from __future__ import annotations

import time


def proc_state(pid: int) -> str | None:
    """The /proc state letter of ``pid`` ('Z' for a zombie), or None when no such process exists."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):  # gone, possibly while we read
        return None


def alive(pid: int) -> bool:
    """``pid`` runs: it exists and is not a zombie (an orphan whose reaper, e.g. a test process that an
    in-process agent made a child subreaper, has not reaped it yet has stopped all the same)."""
    return proc_state(pid) not in (None, "Z", "X")


def wait_gone(pid: int, within: float = 10.0) -> str | None:
    """Wait up to ``within`` seconds for ``pid`` to disappear; its last state if it did not (else None)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        state = proc_state(pid)
        if state is None:
            return None
        time.sleep(0.02)
    return proc_state(pid)
