"""Several URLs of one API (servers sharing one database): which one requests go to, failover and failback.

Usage::

    endpoints = Endpoints(("http://a:4300", "http://b:4300"), failback_interval=30.0)
    for url in endpoints.order():          # the URL in use first, then the others, each once
        ...send; on a connection failure try the next url...
    endpoints.answered(url, failures)      # the url that answered after ``failures``: now the one in use

One ``Endpoints`` is shared by every client of an agent that talks to these servers (the agent's client and
every run's scoped client), so claims, heartbeats, state reports, log shipping and run tokens all follow one
choice. A switch happens only when another URL *answers* after the URL in use failed: during a complete
outage nothing moves and nothing is logged per request (the agent logs the outage once). Back to the first
(preferred) URL: while another URL is in use, at most every ``failback_interval`` seconds a background
thread asks the first URL's ``/api/health``; when it answers 200, requests go there again.

Several URLs travel through the orchestrator factory (``factory(url, key, timeout)``) as one string, the
URLs separated by a space (:func:`join_urls`), which no URL can contain.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import requests

logger = logging.getLogger("localagent.api")

FAILBACK_INTERVAL = 30.0
"""Default seconds between two checks of the preferred URL while another one is in use."""

FAILOVER_STATUSES = frozenset({502, 503, 504})
"""Answers of a proxy (or a server) that cannot serve now: the request goes to the next URL."""

SwitchListener = Callable[[str], None]
"""Called with ``"failover"`` or ``"failback"`` at every switch (the agent counts them in a metric)."""

Probe = Callable[[str, float], bool]


def split_urls(spec: str) -> tuple[str, ...]:
    """``"http://a http://b"`` -> ``("http://a", "http://b")`` (one URL -> a tuple of one)."""
    return tuple(part.rstrip("/") for part in spec.split())


def join_urls(urls: Sequence[str] | str) -> str:
    """The one-string form of several URLs (a single URL is itself)."""
    return urls if isinstance(urls, str) else " ".join(urls)


def same_servers(first: str, second: str) -> bool:
    """Whether two URL specs share a server: then they are one API (one database), and a change from one to
    the other keeps the agent's registration and moves its runs' reports along."""
    return bool(set(split_urls(first)) & set(split_urls(second)))


def health_probe(url: str, timeout: float) -> bool:
    """Whether ``url``'s ``/api/health`` answers 200 within ``timeout`` (no key needed)."""
    try:
        with requests.get(url + "/api/health", timeout=timeout) as response:
            return response.status_code == 200
    except requests.RequestException:
        return False


class Endpoints:
    """The URLs of one API and the one in use (thread-safe).

    ``Endpoints(["http://a", "http://b"]).order()`` -> ``["http://a", "http://b"]``
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        failback_interval: float = FAILBACK_INTERVAL,
        probe: Probe = health_probe,
        probe_timeout: float = 5.0,
        on_switch: SwitchListener | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not urls:
            raise ValueError("at least one URL is needed")
        self._lock = threading.Lock()
        self._urls = tuple(urls)
        self._current = self._urls[0]
        self.failback_interval = failback_interval
        self.probe_timeout = probe_timeout
        self._probe = probe
        self._on_switch = on_switch
        self._clock = clock
        self._next_probe = 0.0
        self._probing = False

    @property
    def urls(self) -> tuple[str, ...]:
        return self._urls

    @property
    def current(self) -> str:
        """The URL requests go to first now."""
        return self._current

    def __len__(self) -> int:
        return len(self._urls)

    def set_listener(self, on_switch: SwitchListener | None) -> None:
        self._on_switch = on_switch

    def replace(self, urls: Sequence[str]) -> None:
        """A reload changed the list: the URL in use stays if it is still listed, else the first one is used."""
        urls = tuple(urls)
        if not urls:
            raise ValueError("at least one URL is needed")
        with self._lock:
            if urls == self._urls:
                return
            self._urls = urls
            if self._current not in urls:
                self._current = urls[0]
            current = self._current
        logger.info("API URLs now %s; using %s", ", ".join(urls), current)

    def order(self) -> list[str]:
        """The URLs to try for one request: the one in use, then the next ones in list order (each once)."""
        with self._lock:
            urls, current = self._urls, self._current
            start = urls.index(current) if current in urls else 0
            probe_now = current != urls[0] and not self._probing and self._clock() >= self._next_probe
            if probe_now:
                self._probing = True
                self._next_probe = self._clock() + self.failback_interval
        if probe_now:
            threading.Thread(target=self._probe_preferred, name="localagent-api-failback", daemon=True).start()
        return [urls[(start + step) % len(urls)] for step in range(len(urls))]

    def answered(self, url: str, failures: Sequence[tuple[str, str]]) -> None:
        """``url`` answered this request after the URLs in ``failures`` (``(url, reason)``) failed."""
        if not failures:
            return  # the URL in use answered (or one a concurrent switch left behind: nothing to do)
        with self._lock:
            old = self._current
            if url == old or url not in self._urls:
                return  # another thread made the same switch already
            self._current = url
            self._next_probe = self._clock() + self.failback_interval
        reason = next((why for failed, why in failures if failed == old), failures[0][1])
        logger.warning("API %s unreachable (%s); using %s", old, reason, url)
        self._notify("failover")

    def _probe_preferred(self) -> None:
        try:
            preferred = self._urls[0]
            healthy = self._probe(preferred, self.probe_timeout)
            with self._lock:
                old = self._current
                switch = healthy and old != preferred and self._urls[0] == preferred
                if switch:
                    self._current = preferred
        finally:
            with self._lock:
                self._probing = False
        if switch:
            logger.warning("API %s answers again; using it instead of %s (the first URL is preferred)", preferred, old)
            self._notify("failback")

    def _notify(self, kind: str) -> None:
        if self._on_switch is not None:
            try:
                self._on_switch(kind)
            except Exception:  # a metric must never break a request
                logger.exception("API switch listener failed")

    def __repr__(self) -> str:
        return f"Endpoints({list(self._urls)!r}, current={self._current!r})"
