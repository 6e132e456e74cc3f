"""The in-process API of ``api.url = "embedded"``: start it, move it when a reload asks, stop it.

Usage::

    embedded = EmbeddedApi()
    url = embedded.start(loaded)            # ServiceError when server.address cannot be bound
    embedded.follow(old, new)               # a reload changed server.address or the API key
    embedded.sweep({"http://127.0.0.1:4300"})  # urls runs still report to: stop listeners nobody uses
    embedded.stop()
    client = embedded.client(url, key, timeout)  # the agent's calls to it skip HTTP (embedded/inprocess.py)

A move starts a second server on the new address against the *same database* (so the agent keeps its
agent id and every run its token) and makes it current; the old listener keeps serving, because runs it
handed out report to it (their run client and their ``LOCALAGENT_API_URL`` name its address), until
:meth:`sweep` sees no run using it. A new API key on an unchanged address restarts the server on that
address with the new key (runs keep their address; their reports retry over the short gap). The
database never changes under a running embedded API: the reload refuses that key live.
"""

from __future__ import annotations

import errno
import logging
import threading
from typing import TYPE_CHECKING

from localagent.config.render import redact_url
from localagent.errors import ServiceError

if TYPE_CHECKING:
    from localagent.api.port import Orchestrator
    from localagent.config import LoadedConfig
    from localagent.config.model import ServerSection
    from localagent.server.runner import ServerThread

logger = logging.getLogger("localagent.embedded")


def _start_server(address: str, database_url: str, api_key: str | None, pool: ServerSection) -> ServerThread:
    from localagent.server.runner import ServerThread

    server = ServerThread(
        address=address,
        database_url=database_url,
        api_keys=(api_key,) if api_key else (),
        db_pool_size=pool.db_pool_size,
        db_max_overflow=pool.db_max_overflow,
        db_prepared_statements=pool.db_prepared_statements,
    )
    try:
        server.start()
    except ServiceError as exc:
        cause = exc.__cause__
        if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
            raise ServiceError(
                f"the embedded API cannot listen on {address}: the address is already in use; "
                "stop what listens there, or change server.address (or point api.url at a running API)"
            ) from cause
        raise
    except OSError as exc:
        raise ServiceError(
            f"cannot start the embedded API on {address}: {exc.strerror or exc}; free the port or change server.address"
        ) from exc
    return server


class EmbeddedApi:
    """The embedded API server in force, plus listeners left behind for runs still reporting to them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: ServerThread | None = None
        self._address = ""  # the address the current server was asked for
        self._left_behind: list[ServerThread] = []

    @property
    def url(self) -> str:
        if self._current is None:
            raise ServiceError("the embedded API is not running")
        return self._current.url

    def server_at(self, url: str) -> ServerThread | None:
        """The running listener (current or left behind) at ``url``, if any."""
        with self._lock:
            servers = [*([self._current] if self._current is not None else []), *self._left_behind]
        for server in servers:
            if server.running and server.url == url:
                return server
        return None

    def client(self, url: str, key: str | None, timeout: float) -> Orchestrator:
        """A client of the API at ``url``: in-process while this embedded API serves ``url``, else HTTP.

        The agent's session makes its clients here (an ``OrchestratorFactory``), so its claims, state reports, log
        batches and heartbeats to the embedded API skip loopback HTTP.
        """
        from localagent.api.client import ApiClient
        from localagent.embedded.inprocess import InProcessClient

        http = ApiClient(url, key=key, timeout=timeout, retries=0)  # the agent retries; never a retry in a retry
        if self.server_at(url) is None:
            return http
        return InProcessClient(http, timeout=timeout, locate=self.server_at)

    def start(self, loaded: LoadedConfig) -> str:
        """Serve the API on ``server.address`` with ``server.database``; its url."""
        config = loaded.config
        server = _start_server(config.server.address, config.database_url(), loaded.api_key, config.server)
        with self._lock:
            self._current, self._address = server, config.server.address
        logger.info("embedded API listening on %s (database %s)", server.url, redact_url(config.database_url()))
        return server.url

    def follow(self, old: LoadedConfig, new: LoadedConfig) -> str:
        """Serve ``new``'s address and key (same database); the url new claims should use.

        Raises ServiceError when the new address cannot be bound: the current server keeps serving.
        """
        current = self._current
        if current is None:
            raise ServiceError("the embedded API is not running")
        address, database_url = new.config.server.address, old.config.database_url()
        pool = old.config.server  # the pool settings of the running server (a restart applies new ones)
        if address == self._address:
            # Same address, new key: the port must be freed first. Keep the real port (server.address may
            # say port 0) so that running runs find the API where they were told it is.
            bound = current.url.removeprefix("http://")
            current.stop()
            try:
                server = _start_server(bound, database_url, new.api_key, pool)
            except ServiceError:
                fallback = _start_server(bound, database_url, old.api_key, pool)  # the old key rather than no API
                with self._lock:
                    self._current = fallback
                raise
            logger.info("embedded API restarted on %s with the new API key", server.url)
        else:
            server = _start_server(address, database_url, new.api_key, pool)
            with self._lock:
                self._left_behind.append(current)
            logger.info(
                "embedded API moved to %s; %s keeps serving the runs it handed out until they end",
                server.url,
                current.url,
            )
        with self._lock:
            self._current, self._address = server, address
        return server.url

    def sweep(self, urls_in_use: set[str]) -> None:
        """Stop every listener left behind that no run (nor a claim in flight) uses any more."""
        with self._lock:
            unused = [server for server in self._left_behind if server.url not in urls_in_use]
            self._left_behind = [server for server in self._left_behind if server not in unused]
        for server in unused:
            url = server.url
            server.stop()
            logger.info("embedded API listener %s stopped: no run reports to it any more", url)

    def stop(self) -> None:
        with self._lock:
            servers = [*self._left_behind, *([self._current] if self._current is not None else [])]
            self._left_behind, self._current = [], None
        for server in servers:
            server.stop()
        logger.debug("embedded API stopped")
