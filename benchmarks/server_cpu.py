"""The API server's own CPU time per request, with the client in another process.

    python benchmarks/server_cpu.py              # 500 requests of each kind
    python benchmarks/server_cpu.py --count 2000

It starts ``localagent server`` (SQLite in a temp dir, a free port on 127.0.0.1) and sends each kind of
request ``--count`` times, one after the other, from this process. For each kind it prints the wall time per
request seen by the client and the server process's CPU time (utime + stime from ``/proc``) per request
(or per run, for the requests that carry several runs). This is the cost the agent shares in embedded mode,
where the server runs in its own process; ``api_bench.py`` measures rates with the client in-process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(self, work: Path) -> None:
        exe = shutil.which("localagent") or sys.exit("localagent is not on PATH: pip install -e . first")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.popen = subprocess.Popen(
            [exe, "server", "--address", f"127.0.0.1:{port}", "--database", f"sqlite:///{work / 'api.db'}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.http = requests.Session()
        self.http.trust_env = False
        deadline = time.monotonic() + 30
        while True:
            try:
                self.http.get(self.url + "/api/health", timeout=1).raise_for_status()
                return
            except requests.RequestException:
                if self.popen.poll() is not None or time.monotonic() > deadline:
                    sys.exit("localagent server did not start")
                time.sleep(0.1)

    def post(self, path: str, body: dict[str, Any], token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        reply = self.http.post(self.url + path, json=body, headers=headers, timeout=30)
        reply.raise_for_status()
        return reply.json()

    def stop(self) -> None:
        self.popen.terminate()
        self.popen.wait(30)


def measure(server: Server, name: str, count: int, action: Callable[[], object], unit: str = "request") -> None:
    cpu0, t0 = cpu_seconds(server.popen.pid), time.perf_counter()
    action()
    wall, cpu = time.perf_counter() - t0, cpu_seconds(server.popen.pid) - cpu0
    print(f"{name:<34} wall {wall / count * 1000:6.2f} ms   server CPU {cpu / count * 1000:6.2f} ms per {unit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=500, help="requests (or runs) of each kind")
    parser.add_argument("--batch", type=int, default=8, help="runs per claim and per state batch")
    args = parser.parse_args()
    n, batch = args.count, args.batch
    work = Path(tempfile.mkdtemp(prefix="localagent-server-cpu-"))
    server = Server(work)
    try:
        server.post("/api/flows", {"name": "noop", "command": ["true"]})
        agent = server.post("/api/agents", {"name": "bench", "run_unlabeled": True})["id"]
        claim = {"slots": 1, "wait": 0, "run_unlabeled": True}

        def many(call: Callable[[], object]) -> Callable[[], None]:
            def repeat() -> None:
                for _ in range(n):
                    call()

            return repeat

        measure(server, "GET /api/health (the floor)", n, many(lambda: server.http.get(server.url + "/api/health")))
        measure(server, "create a run", n, many(lambda: server.post("/api/flow_runs", {"flow": "noop"})))
        claimed: list[dict[str, Any]] = []
        measure(
            server,
            "claim, slots=1",
            n,
            many(lambda: claimed.extend(server.post(f"/api/agents/{agent}/claim", claim)["runs"])),
        )
        measure(
            server,
            "state report alone (Running)",
            n,
            lambda: [
                server.post(f"/api/flow_runs/{c['run']['id']}/state", {"state": "Running", "pid": 1}, c["token"])
                for c in claimed
            ],
        )
        for _ in range(n):
            server.post("/api/flow_runs", {"flow": "noop"})
        claimed_b: list[dict[str, Any]] = []
        claim_b = {**claim, "slots": batch}

        def claim_all() -> None:
            while len(claimed_b) < n:
                claimed_b.extend(server.post(f"/api/agents/{agent}/claim", claim_b)["runs"])

        measure(server, f"claim, slots={batch}", n, claim_all, unit="run")

        def report_batches(state: str, **fields: Any) -> Callable[[], None]:
            def send() -> None:
                for start in range(0, n, batch):
                    group = claimed_b[start : start + batch]
                    reports = [{"run_id": c["run"]["id"], "state": state, **fields} for c in group]
                    server.post("/api/flow_runs/states", {"reports": reports})

            return send

        measure(server, f"state reports, {batch} a batch (Running)", n, report_batches("Running", pid=1), unit="run")
        measure(server, f"state reports, {batch} a batch (Success)", n, report_batches("Success", exit_code=0), "run")
        measure(server, "heartbeat", n, many(lambda: server.post(f"/api/agents/{agent}/heartbeat", {})))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
