"""A part of the agent that can work on a daemon thread of its own (the pump, the shipper, a console follower).

Usage::

    class Shipper(Background):
        def start(self) -> None:
            self._run_in_background(self.run, name="log-shipper")

    shipper.start(); shipper.join(30)   # True once the thread has ended (or was never started)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class Background:
    """Owns at most one daemon thread; :meth:`join` waits for it."""

    _thread: threading.Thread | None = None

    def _run_in_background(self, target: Callable[..., object], *args: Any, name: str) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._thread = thread
        thread.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` for the thread to end; ``True`` once it has (or none was started)."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()
