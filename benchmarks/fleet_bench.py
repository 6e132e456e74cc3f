"""Two server processes on one PostgreSQL database: cross-server claim latency, idle cost, bulk creation.

    python benchmarks/fleet_bench.py                           # PostgreSQL from LOCALAGENT_TEST_POSTGRES_URL
    python benchmarks/fleet_bench.py --samples 50 --idle-agents 20 --idle-seconds 15
    python benchmarks/fleet_bench.py --skip-latency --skip-idle --bulk 20000   # bulk creation only

It makes a fresh database (dropped afterwards), starts ``localagent server`` twice on it (A and B, free
ports on 127.0.0.1) and measures:

- **cross-server claim latency**: one agent long-polls on B; a run is created through A; the time from
  sending the create request to the claim reply arriving (p50/p99 over ``--samples``);
- **idle cost**: ``--idle-agents`` agents (half on each server) long-polling with nothing to claim; the CPU
  of both server processes and of the database backends serving them, in cores, over ``--idle-seconds``;
- **bulk creation** (``--bulk N``): N runs created with ``POST /api/flow_runs/bulk`` in requests of
  ``--bulk-batch`` runs, on PostgreSQL (server A) and on SQLite (a third server), as runs/s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

CLAIM_WAIT = 25.0
"""Seconds per long-poll (under half the default 60 s agent timeout, which caps it)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(self, work: Path, name: str, database_url: str) -> None:
        exe = shutil.which("localagent") or sys.exit("localagent is not on PATH: pip install -e . first")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = (work / f"{name}.log").open("w")
        self.popen = subprocess.Popen(
            [exe, "server", "--address", f"127.0.0.1:{port}", "--database", database_url, "--log-level", "warning"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.http = session()
        deadline = time.monotonic() + 60
        while True:
            try:
                self.http.get(self.url + "/api/health", timeout=1).raise_for_status()
                return
            except requests.RequestException:
                if self.popen.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"localagent server {name} did not start; see {work / name}.log")
                time.sleep(0.1)

    def post(self, path: str, body: Any, timeout: float = 60) -> Any:
        reply = self.http.post(self.url + path, json=body, timeout=timeout)
        if reply.status_code >= 400:
            sys.exit(f"{path}: {reply.status_code} {reply.text[:300]}")
        return reply.json()

    def stop(self) -> None:
        self.popen.terminate()
        self.popen.wait(30)
        self.log.close()


def session() -> requests.Session:
    http = requests.Session()
    http.trust_env = False
    return http


@contextmanager
def fresh_database(base_url: str) -> Iterator[str]:
    base = sa.make_url(base_url)
    name = f"la_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def backend_pids(database_url: str) -> list[int]:
    url = sa.make_url(database_url)
    engine = sa.create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()"),
            {"db": url.database},
        ).all()
    engine.dispose()
    return [int(row[0]) for row in rows]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def claim_latency(a: Server, b: Server, samples: int) -> None:
    agent = b.post("/api/agents", {"name": "latency", "hostname": "bench", "run_unlabeled": True})["id"]
    http = session()
    latencies: list[float] = []
    for _ in range(samples):
        got: list[float] = []

        def poll(got: list[float] = got) -> None:
            while not got:
                reply = http.post(
                    f"{b.url}/api/agents/{agent}/claim",
                    json={"slots": 1, "wait": CLAIM_WAIT, "run_unlabeled": True},
                    timeout=CLAIM_WAIT + 30,
                )
                if reply.json()["runs"]:
                    got.append(time.perf_counter())

        poller = threading.Thread(target=poll)
        poller.start()
        time.sleep(0.3)  # the claim is waiting on B by now
        started = time.perf_counter()
        a.post("/api/flow_runs", {"flow": "noop"})
        poller.join()
        latencies.append(got[0] - started)
    ms = [value * 1000 for value in latencies]
    print(
        f"cross-server claim latency over {samples} runs: p50 {percentile(ms, 0.5):.1f} ms, "
        f"p99 {percentile(ms, 0.99):.1f} ms, mean {statistics.mean(ms):.1f} ms, max {max(ms):.1f} ms"
    )


def idle_cost(servers: list[Server], database_url: str, agents: int, seconds: float) -> None:
    stop = threading.Event()
    ids = [
        (
            server,
            server.post("/api/agents", {"name": f"idle-{n}", "hostname": "bench", "labels": ["nothing-here"]})["id"],
        )
        for n in range(agents)
        for server in [servers[n % len(servers)]]
    ]

    def idle(server: Server, agent: str) -> None:
        http = session()
        while not stop.is_set():
            http.post(
                f"{server.url}/api/agents/{agent}/claim",
                json={"slots": 1, "wait": CLAIM_WAIT, "labels": ["nothing-here"]},
                timeout=CLAIM_WAIT + 30,
            )

    threads = [threading.Thread(target=idle, args=pair, daemon=True) for pair in ids]
    for thread in threads:
        thread.start()
    time.sleep(2.0)  # every poll is waiting
    pids = backend_pids(database_url)
    server_cpu0 = sum(cpu_seconds(s.popen.pid) for s in servers)
    db_cpu0 = sum(cpu_seconds(pid) for pid in pids)
    started = time.perf_counter()
    time.sleep(seconds)
    elapsed = time.perf_counter() - started
    server_cpu = sum(cpu_seconds(s.popen.pid) for s in servers) - server_cpu0
    db_cpu = sum(cpu_seconds(pid) for pid in pids) - db_cpu0
    stop.set()
    print(
        f"idle, {agents} agents long-polling over {len(servers)} servers for {elapsed:.0f} s: "
        f"servers {server_cpu / elapsed:.4f} cores, PostgreSQL backends {db_cpu / elapsed:.4f} cores"
    )


def bulk_rate(server: Server, label: str, total: int, batch: int) -> None:
    started = time.perf_counter()
    made = 0
    while made < total:
        size = min(batch, total - made)
        server.post(
            "/api/flow_runs/bulk", {"runs": [{"flow": "noop", "parameters": {"i": made + i}} for i in range(size)]}
        )
        made += size
    elapsed = time.perf_counter() - started
    print(
        f"bulk creation on {label}: {total} runs in {elapsed:.2f} s = {total / elapsed:.0f} runs/s ({batch} a request)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg-url", default=os.environ.get("LOCALAGENT_TEST_POSTGRES_URL", ""))
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--idle-agents", type=int, default=20)
    parser.add_argument("--idle-seconds", type=float, default=15.0)
    parser.add_argument("--bulk", type=int, default=0, help="runs to create in bulk (0: skip)")
    parser.add_argument("--bulk-batch", type=int, default=1000)
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-idle", action="store_true")
    args = parser.parse_args()
    if not args.pg_url:
        sys.exit("give --pg-url or set LOCALAGENT_TEST_POSTGRES_URL (a role that may create databases)")
    work = Path(tempfile.mkdtemp(prefix="localagent-fleet-bench-"))
    try:
        with fresh_database(args.pg_url) as database_url:
            a = Server(work, "a", database_url)
            b = Server(work, "b", database_url)
            try:
                a.post("/api/flows", {"name": "noop", "command": ["true"]})
                if not args.skip_latency:
                    claim_latency(a, b, args.samples)
                if not args.skip_idle:
                    idle_cost([a, b], database_url, args.idle_agents, args.idle_seconds)
                if args.bulk:
                    bulk_rate(a, "PostgreSQL", args.bulk, args.bulk_batch)
            finally:
                a.stop()
                b.stop()
        if args.bulk:
            lite = Server(work, "sqlite", f"sqlite:///{work / 'api.db'}")
            try:
                lite.post("/api/flows", {"name": "noop", "command": ["true"]})
                bulk_rate(lite, "SQLite", args.bulk, args.bulk_batch)
            finally:
                lite.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
