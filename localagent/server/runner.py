"""Run the API with uvicorn in a background thread of this process (the embedded mode, tests, the CLI).

Usage::

    server = ServerThread(address="127.0.0.1:0", database_url="sqlite:///x.db", api_keys=())
    server.start()          # returns once it accepts connections
    server.url              # http://127.0.0.1:<the real port>
    server.stop()           # clean and idempotent
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import sys
import threading
from collections.abc import Coroutine, Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI

from localagent.config.model import parse_address
from localagent.errors import ServiceError
from localagent.server.app import create_app
from localagent.server.settings import ServerSettings

_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 15.0
_GRACEFUL_SHUTDOWN = 5


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its owner (it runs outside the main thread)."""

    def install_signal_handlers(self) -> None:
        return None


class ServerThread:
    """Runs the API (uvicorn, no signal handlers) in a background thread of this process.

    server = ServerThread(address="127.0.0.1:0", database_url="sqlite:///x.db", api_keys=());
    server.start(); server.url; server.stop()
    """

    def __init__(
        self,
        address: str = "127.0.0.1:4300",
        database_url: str = "sqlite:///localagent.db",
        api_keys: Sequence[str] = (),
        *,
        agent_timeout: float = 60.0,
        lost_timeout: float | None = 86400.0,
        submitted_grace: float = 30.0,
        sweep_interval: float | None = None,
        recheck_interval: float = 1.0,
        listen: bool = True,
        listen_database_url: str | None = None,
        db_pool_size: int = 20,
        db_max_overflow: int = 20,
        db_prepared_statements: bool = True,
        log_level: str = "warning",
        access_log: bool = False,
    ) -> None:
        try:
            self.host, self._requested_port = parse_address(address)
        except ValueError as exc:
            raise ServiceError(f"bad server address: {exc}") from exc
        try:
            self.settings = ServerSettings(
                database_url=database_url,
                api_keys=tuple(api_keys),
                agent_timeout=agent_timeout,
                lost_timeout=lost_timeout,
                submitted_grace=submitted_grace,
                sweep_interval=sweep_interval,
                recheck_interval=recheck_interval,
                listen=listen,
                listen_database_url=listen_database_url,
                db_pool_size=db_pool_size,
                db_max_overflow=db_max_overflow,
                db_prepared_statements=db_prepared_statements,
            )
        except ValueError as exc:
            raise ServiceError(f"bad server settings: {exc}") from exc
        self._log_level = log_level
        self._access_log = access_log
        self._lock = threading.Lock()
        self._server: _QuietServer | None = None
        self._thread: threading.Thread | None = None
        self._app: FastAPI | None = None
        self._port: int | None = None
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise ServiceError("the API server is not started")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def app(self) -> FastAPI:
        if self._app is None:
            raise ServiceError("the API server is not started")
        return self._app

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop serving the API while it runs (for in-process callers), else None."""
        return self._loop if self.running else None

    def start(self) -> None:
        """Bind, open the database and serve; returns once connections are accepted."""
        with self._lock:
            if self._thread is not None:
                return
            if not self.settings.api_keys and not is_loopback(self.host):
                raise ServiceError(
                    f"refusing to listen on {self.host} without an API key; pass --api-key "
                    "(or LOCALAGENT_SERVER_API_KEYS) or listen on 127.0.0.1"
                )
            sock = self._bind()
            try:
                app = create_app(self.settings)
            except BaseException:
                sock.close()
                raise
            config = uvicorn.Config(
                app,
                log_level=self._log_level,
                access_log=self._access_log,
                lifespan="on",
                timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN,
                loop="none",  # the loop is made by _run_loop (uvloop when installed)
            )
            server = _QuietServer(config)
            self._failure = None
            thread = threading.Thread(target=self._serve, args=(server, sock), name="localagent-api", daemon=True)
            thread.start()
            while not server.started:
                if not thread.is_alive():
                    sock.close()
                    reason = self._failure or "see the log above"
                    raise ServiceError(f"the API server on {self._display(sock)} failed to start: {reason}")
                thread.join(0.01)
            self._server, self._thread, self._app = server, thread, app
            self._port = sock.getsockname()[1]

    def stop(self) -> None:
        """Wake every long-poll, stop serving and wait for the thread; safe to call twice."""
        with self._lock:
            server, thread, app = self._server, self._thread, self._app
            self._server = self._thread = None
            if server is None or thread is None:
                return
            if app is not None:
                app.state.services.notifier.close()
            server.should_exit = True
            thread.join(_STOP_TIMEOUT)
            if thread.is_alive():
                server.force_exit = True
                thread.join(_STOP_TIMEOUT)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server thread ends (True) or ``timeout`` passes (False)."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets of that protocol,
        # and without it every response waits ~40 ms for a delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._requested_port))
            sock.listen(2048)
        except OSError as exc:
            sock.close()
            where = f"{self.host}:{self._requested_port}"
            if exc.errno == errno.EADDRINUSE:
                raise ServiceError(
                    f"address {where} is already in use; stop the other server or choose another --address"
                ) from exc
            raise ServiceError(f"cannot listen on {where}: {exc.strerror or exc}") from exc
        sock.setblocking(False)
        return sock

    def _display(self, sock: socket.socket) -> str:
        try:
            return f"{self.host}:{sock.getsockname()[1]}"
        except OSError:
            return f"{self.host}:{self._requested_port}"

    def _serve(self, server: _QuietServer, sock: socket.socket) -> None:
        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            try:
                await server.serve(sockets=[sock])
            finally:
                self._loop = None

        try:
            _run_loop(serve())
        except BaseException as exc:  # reported to start() or logged; the thread must not die silently
            self._failure = exc
            logging.getLogger(__name__).exception("the API server stopped with an error")
        finally:
            sock.close()


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop when it is installed (several times cheaper per request), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """``asyncio.run(main)`` on a loop of :func:`_new_loop`, set for this thread only."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=_new_loop) as runner:
            runner.run(main)
        return
    loop = _new_loop()  # pragma: no cover - Python 3.10
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
