"""A tiny real HTTP server in a thread whose answers a test scripts: statuses, garbage, slowness, hang-ups."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    """One scripted answer. ``hang_up`` closes the connection without answering."""

    status: int = 200
    body: Any = None
    raw: bytes | None = None
    delay: float = 0.0
    hang_up: bool = False


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Script:
    """Answers are consumed in order; the last one repeats."""

    answers: list[Answer] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_answer(self) -> Answer:
        with self.lock:
            if len(self.answers) > 1:
                return self.answers.pop(0)
            return self.answers[0] if self.answers else Answer(404, {"detail": "nothing scripted"})


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        script = self.server.script
        with script.lock:
            script.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
        answer = script.next_answer()
        if answer.delay:
            time.sleep(answer.delay)
        if answer.hang_up:
            self.close_connection = True
            self.connection.close()
            return
        payload = answer.raw if answer.raw is not None else json.dumps(answer.body).encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _serve
    do_POST = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    script: Script

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and left is what some tests want


@contextmanager
def scripted_server(*answers: Answer) -> Iterator[tuple[str, Script]]:
    """Serve ``answers`` on a free loopback port; yields the base url and the script (with what was seen)."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.script = Script(list(answers))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}", server.script
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
