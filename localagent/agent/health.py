"""``/health`` and ``/metrics`` on ``health.address``, served from a background thread.

Usage::

    server = HealthServer(report=agent.health_report, metrics=metrics)
    server.start("127.0.0.1:8080")   # ServiceError if the address cannot be bound
    server.rebind("127.0.0.1:8081")  # a reload moved it
    server.stop()

``report`` returns ``(healthy, body)``: ``GET /health`` answers the body as JSON with 200 when healthy,
503 otherwise. ``GET /metrics`` answers ``metrics.render()`` in the Prometheus text format.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from localagent.agent.metrics import AgentMetrics
from localagent.config.model import parse_address
from localagent.errors import ServiceError

logger = logging.getLogger(__name__)

HealthReport = Callable[[], tuple[bool, dict[str, Any]]]


class _HealthHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    report: HealthReport
    metrics: AgentMetrics


class _HealthHandler(BaseHTTPRequestHandler):
    server: _HealthHTTPServer
    server_version = "localagent-health"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if path == "/health":
            healthy, body = self.server.report()
            self._send(200 if healthy else 503, "application/json", json.dumps(body, default=str).encode())
        elif path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, self.server.metrics.render())
        else:
            self._send(404, "application/json", b'{"detail": "not found; try /health or /metrics"}')

    def _send(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("health %s - %s", self.address_string(), format % args)


class HealthServer:
    """The health endpoint; start, stop and re-bind it at will (thread-safe)."""

    def __init__(self, *, report: HealthReport, metrics: AgentMetrics) -> None:
        self._report = report
        self._metrics = metrics
        self._lock = threading.Lock()
        self._server: _HealthHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._address = ""
        self._requested = ""

    @property
    def address(self) -> str:
        """``HOST:PORT`` actually bound (the real port when asked for port 0), or ``""`` when stopped."""
        return self._address

    def start(self, address: str) -> None:
        """Bind ``address`` and serve in a daemon thread. Raises ServiceError when it cannot be bound."""
        with self._lock:
            if self._server is not None:
                raise ServiceError(f"health server already listening on {self._address}")
            host, port = parse_address(address)
            try:
                server = _HealthHTTPServer((host, port), _HealthHandler)
            except OSError as exc:
                raise ServiceError(
                    f"cannot serve /health on {address}: {exc.strerror or exc}; free the port or change health.address"
                ) from exc
            server.report = self._report
            server.metrics = self._metrics
            bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
            self._address = f"[{bound_host}]:{bound_port}" if ":" in bound_host else f"{bound_host}:{bound_port}"
            self._requested = address
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="localagent-health", daemon=True
            )
            self._thread.start()
        logger.info("serving /health and /metrics on http://%s", self._address)

    def stop(self) -> None:
        """Stop serving and release the port. A no-op when not running."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server, self._thread = None, None
            self._address = self._requested = ""
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def rebind(self, address: str) -> None:
        """Move to ``address`` (``""`` turns the endpoint off). On failure the old address keeps serving."""
        if address == self._requested:
            return
        if not address:
            self.stop()
            return
        old = self._requested
        self.stop()
        try:
            self.start(address)
        except ServiceError:
            if old:
                self.start(old)
            raise
