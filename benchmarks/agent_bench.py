"""Measure the agent end to end: dispatch latency, throughput, output overhead, idle CPU and memory.

    python benchmarks/agent_bench.py            # the full run, about 3 minutes on 2 cores
    python benchmarks/agent_bench.py --quick    # smaller counts, about 1 minute
    python benchmarks/agent_bench.py --keep     # keep the temp dir (agent logs, database) for a look
    python benchmarks/agent_bench.py --only output   # just the output overhead (embedded system)
    python benchmarks/agent_bench.py --only rss      # latency + throughput + output runs, then embedded RSS
    python benchmarks/agent_bench.py --only throughput  # just the throughput runs, in a fresh embedded agent

It starts the real system as a user would: ``localagent run -c <temp config>`` as a subprocess (embedded
API on a free port, ``health.address`` on another, ``state_dir`` in a temp dir), and for the agent-only
figures a separate ``localagent server`` plus an agent pointed at it. Everything is driven over HTTP.

Dispatch latency is measured from the run's ``created`` time as the API stored it (the POST reply) to a
timestamp taken *inside* the run's process: the flow's command is ``date +%s.%N > FILE`` (``/bin/sh -c``,
so one fork+exec of ``date`` is included, about 1 ms). The API's own view (``created`` -> ``started``, the
time the agent reported Running) is printed beside it. Runs are created one at a time; each one is waited
for until it ends, so no run competes with the next.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import requests

FINAL = {"Success", "Failed", "Cancelled", "Crashed"}
LINE = "0123456789" * 9 + "abcdefgh"  # 98 characters + newline from `yes`: ~2 million lines per 200 MB
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Scale:
    latency_runs: int
    throughput_runs: int
    output_mb: int
    idle_seconds: float


FULL = Scale(latency_runs=200, throughput_runs=1000, output_mb=200, idle_seconds=30.0)
QUICK = Scale(latency_runs=50, throughput_runs=200, output_mb=50, idle_seconds=10.0)


@dataclass
class Row:
    name: str
    value: str
    target: str
    ok: bool | None  # None: no target


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, value: str, target: str = "", ok: bool | None = None) -> None:
        self.rows.append(Row(name, value, target, ok))
        mark = "" if ok is None else ("  ok" if ok else "  MISS")
        print(f"  {name}: {value}{'  (target ' + target + ')' if target else ''}{mark}", flush=True)


# -- processes --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(path: Path, *, state_dir: Path, api_url: str, server_port: int, health_port: int) -> None:
    path.write_text(
        f"""
[agent]
name = "bench-{path.stem}"
hostname_label = false
run_unlabeled = true
max_concurrent_runs = 16
state_dir = "{state_dir}"

[api]
url = "{api_url}"

[server]
address = "127.0.0.1:{server_port}"

[health]
address = "127.0.0.1:{health_port}"
""",
        encoding="utf-8",
    )


class Proc:
    """A ``localagent`` subprocess whose output goes to a log file."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        exe = shutil.which("localagent") or sys.exit("localagent is not on PATH: pip install -e . first")
        self.popen = subprocess.Popen([exe, *args], stdout=self._out, stderr=subprocess.STDOUT)
        self.pid = self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._out.close()


def wait_http(url: str, proc: Proc, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            sys.exit(f"{proc.log.name}: the process exited with {proc.popen.returncode}:\n{proc.log.read_text()}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    sys.exit(f"{url} did not answer in {timeout:.0f}s; see {proc.log}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- the API ----------------------------------------------------------------------------------------


class Api:
    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()

    @property
    def http(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        session: requests.Session = self._local.session
        return session

    def post(self, path: str, body: dict[str, Any]) -> Any:
        reply = self.http.post(f"{self.url}{path}", json=body, timeout=60)
        reply.raise_for_status()
        return reply.json()

    def get(self, path: str, **params: Any) -> Any:
        reply = self.http.get(f"{self.url}{path}", params=params, timeout=60)
        reply.raise_for_status()
        return reply.json()

    def flow(self, name: str, command: str | list[str], env: dict[str, str] | None = None) -> None:
        self.post("/api/flows", {"name": name, "command": command, "run_config": {"env": env or {}}})

    def create(self, flow: str) -> dict[str, Any]:
        run: dict[str, Any] = self.post("/api/flow_runs", {"flow": flow})
        return run

    def wait_final(self, run_id: str, timeout: float = 300.0, poll: float = 0.01) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run: dict[str, Any] = self.get(f"/api/flow_runs/{run_id}")
            if run["state"] in FINAL:
                return run
            time.sleep(poll)
        sys.exit(f"run {run_id} did not end within {timeout:.0f}s")

    def wait_agent(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.get("/api/agents"):
                return
            time.sleep(0.05)
        sys.exit("the agent did not register")


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def wait_stamp(path: Path, timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            return float(path.read_text())
        time.sleep(0.0005)
    sys.exit(f"{path} was never written: the run did not start")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- the benchmarks ---------------------------------------------------------------------------------


def bench_latency(api: Api, work: Path, runs: int, res: Results) -> None:
    print(f"(a) dispatch latency over {runs} runs, one at a time", flush=True)
    stamps = work / "stamps"
    stamps.mkdir(exist_ok=True)
    api.flow("latency", 'date +%s.%N > "$STAMPS/$LOCALAGENT_FLOW_RUN_ID"', {"STAMPS": str(stamps)})
    to_process: list[float] = []
    to_running: list[float] = []
    for _ in range(runs):
        run = api.create("latency")
        started = wait_stamp(stamps / run["id"])
        final = api.wait_final(run["id"], poll=0.005)
        to_process.append((started - ts(run["created"])) * 1000)
        if final["started"]:
            to_running.append((ts(final["started"]) - ts(run["created"])) * 1000)
    p50, p99 = statistics.median(to_process), pct(to_process, 0.99)
    res.add("dispatch p50 (created -> process)", f"{p50:.1f} ms", "<= 20 ms", p50 <= 20)
    res.add("dispatch p99 (created -> process)", f"{p99:.1f} ms", "<= 100 ms", p99 <= 100)
    if to_running:
        res.add(
            "  API view created -> Running p50/p99",
            f"{statistics.median(to_running):.1f} / {pct(to_running, 0.99):.1f} ms",
        )


def last_success(api: Api, flow: str, runs: int, *, timeout: float) -> float:
    """Wait until all ``runs`` runs of ``flow`` ended Success; the time the last one ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # offset runs-1: at most one row comes back, and only once every run is Success
        if api.get("/api/flow_runs", flow=flow, state="Success", limit=1, offset=runs - 1):
            rows = api.get("/api/flow_runs", flow=flow, limit=1000)
            return max(ts(r["ended"]) for r in rows if r["ended"])
        time.sleep(0.25)
    sys.exit(f"the {runs} runs of {flow} did not all end Success within {timeout:.0f} s")


def bench_throughput(api: Api, runs: int, res: Results, pid: int) -> None:
    print(f"(b) throughput: {runs} runs of `true`, max_concurrent_runs = 16", flush=True)
    api.flow("noop", ["true"])
    cpu_before = cpu_seconds(pid)
    first = time.time()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        created = list(pool.map(lambda _: api.create("noop")["id"], range(runs)))
    create_s = time.time() - first
    ended = last_success(api, "noop", runs, timeout=600)
    cpu = cpu_seconds(pid) - cpu_before
    assert len(created) == runs
    rate = runs / (ended - first)
    res.add("throughput (first create -> last Success)", f"{rate:.0f} runs/s", ">= 150 runs/s", rate >= 150)
    res.add("  creating the runs alone (8 threads)", f"{runs / create_s:.0f} runs/s")
    res.add("  agent process CPU per run (API's creation included)", f"{1000 * cpu / runs:.1f} ms")
    bench_queued_throughput(api, runs, lead=runs / max(runs / create_s, 1.0) * 1.5 + 3.0, res=res)


def bench_queued_throughput(api: Api, runs: int, *, lead: float, res: Results) -> None:
    """The agent's own rate, without the creating client in the way: every run is created ahead of time,
    all scheduled for the same moment, and timed from that moment to the last Success."""
    print(f"    queued: {runs} runs created ahead, all due in {lead:.0f} s", flush=True)
    api.flow("noop-queued", ["true"])
    due = datetime.now(timezone.utc) + timedelta(seconds=lead)
    body = {"flow": "noop-queued", "scheduled_start": due.isoformat()}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: api.post("/api/flow_runs", body), range(runs)))
    if datetime.now(timezone.utc) >= due:
        print("    (creating took longer than the lead: the figure below includes creation)", flush=True)
    ended = last_success(api, "noop-queued", runs, timeout=lead + 600)
    rate = runs / (ended - due.timestamp())
    res.add("throughput, runs queued ahead (due -> last Success)", f"{rate:.0f} runs/s", ">= 150 runs/s", rate >= 150)


def bench_output(api: Api, work: Path, megabytes: int, res: Results) -> None:
    print(f"(c) a run writing {megabytes} MB of output (~{megabytes * 10_000} lines of 99 bytes)", flush=True)
    size = megabytes * 1_000_000
    body = f"yes {LINE} | head -c {size}"
    stamp = 'date +%s.%N > "$STAMPS/$LOCALAGENT_FLOW_RUN_ID'
    script = stamp + '.start"; {body}; ' + stamp + '.end"'
    stamps = work / "stamps"
    stamps.mkdir(exist_ok=True)
    api.flow("out-null", script.format(body=body + " > /dev/null"), {"STAMPS": str(stamps)})
    api.flow("out-api", script.format(body=body), {"STAMPS": str(stamps)})
    timings: dict[str, tuple[float, float]] = {}
    for flow in ("out-null", "out-api"):
        run = api.create(flow)
        final = api.wait_final(run["id"], timeout=600, poll=0.05)
        if final["state"] != "Success":
            sys.exit(f"{flow} ended {final['state']}: {final['state_message']}")
        start = float((stamps / f"{run['id']}.start").read_text())
        end = float((stamps / f"{run['id']}.end").read_text())
        timings[flow] = (end - start, ts(final["ended"]) - start)
    null_exit, null_final = timings["out-null"]
    api_exit, api_final = timings["out-api"]
    ratio = api_exit / null_exit
    res.add("  to /dev/null: process / final state", f"{null_exit:.2f} s / {null_final:.2f} s")
    res.add("  to the agent: process / final state", f"{api_exit:.2f} s / {api_final:.2f} s")
    res.add("output overhead (process wall, agent vs /dev/null)", f"{ratio:.1f}x", "<= 1.5x", ratio <= 1.5)
    res.add("  agent read rate while the process runs", f"{megabytes / api_exit:.0f} MB/s")
    res.add("  final state after the process exited", f"{api_final - api_exit:.2f} s")


def bench_idle(pid: int, seconds: float, label: str, rss_target: float, res: Results) -> None:
    print(f"(d) idle CPU of the agent over {seconds:.0f} s ({label})", flush=True)
    time.sleep(3.0)  # let the last shipping and reporting settle
    before, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    cpu = (cpu_seconds(pid) - before) / (time.monotonic() - t0) * 100
    rss = rss_mib(pid)
    res.add(f"idle CPU, {label}", f"{cpu:.2f} %", "< 1 %", cpu < 1.0)
    res.add(f"RSS, {label}", f"{rss:.0f} MiB", f"<= {rss_target:.0f} MiB", rss <= rss_target)


@contextlib.contextmanager
def embedded(work: Path) -> Iterator[tuple[Api, Proc]]:
    api_port, health_port = free_port(), free_port()
    config = work / "embedded.toml"
    write_config(config, state_dir=work / "state", api_url="embedded", server_port=api_port, health_port=health_port)
    agent = Proc(["run", "-c", str(config)], work / "embedded-agent.log")
    try:
        wait_http(f"http://127.0.0.1:{health_port}/health", agent)
        api = Api(f"http://127.0.0.1:{api_port}")
        api.wait_agent()
        yield api, agent
    finally:
        agent.stop()


@contextlib.contextmanager
def separate(work: Path) -> Iterator[tuple[Api, Proc]]:
    api_port, health_port = free_port(), free_port()
    server = Proc(
        [
            "server",
            "--address",
            f"127.0.0.1:{api_port}",
            "--database",
            f"sqlite:///{work / 'separate.db'}",
            "--log-level",
            "warning",
        ],
        work / "server.log",
    )
    config = work / "agent-only.toml"
    url = f"http://127.0.0.1:{api_port}"
    write_config(config, state_dir=work / "state2", api_url=url, server_port=free_port(), health_port=health_port)
    agent: Proc | None = None
    try:
        wait_http(f"{url}/api/health", server)
        agent = Proc(["run", "-c", str(config)], work / "separate-agent.log")
        wait_http(f"http://127.0.0.1:{health_port}/health", agent)
        api = Api(url)
        api.wait_agent()
        yield api, agent
    finally:
        if agent is not None:
            agent.stop()
        server.stop()


def run_all(work: Path, scale: Scale, res: Results) -> None:
    with embedded(work) as (api, agent):
        res.add("RSS, embedded, at start", f"{rss_mib(agent.pid):.0f} MiB")
        bench_latency(api, work, scale.latency_runs, res)
        bench_throughput(api, scale.throughput_runs, res, agent.pid)
        bench_output(api, work, scale.output_mb, res)
        bench_idle(agent.pid, scale.idle_seconds, "embedded (after the runs above)", 120, res)
    with separate(work) as (api, agent):
        api.flow("warm", ["true"])
        for run_id in [api.create("warm")["id"] for _ in range(50)]:
            api.wait_final(run_id, poll=0.05)
        bench_idle(agent.pid, scale.idle_seconds, "agent only (after 50 runs)", 60, res)


def run_only(part: str, work: Path, scale: Scale, res: Results) -> None:
    """One part of the embedded benchmark (``--only``), for a quick measure while working on it."""
    with embedded(work) as (api, agent):
        res.add("RSS, embedded, at start", f"{rss_mib(agent.pid):.0f} MiB")
        if part == "throughput":
            bench_throughput(api, scale.throughput_runs, res, agent.pid)
            return
        if part == "rss":
            bench_latency(api, work, scale.latency_runs, res)
            bench_throughput(api, scale.throughput_runs, res, agent.pid)
        bench_output(api, work, scale.output_mb, res)
        time.sleep(3.0)  # let the last shipping and reporting settle, as bench_idle does
        rss = rss_mib(agent.pid)
        res.add("RSS, embedded (after the runs above)", f"{rss:.0f} MiB", "<= 120 MiB", rss <= 120)


def print_table(res: Results, scale: Scale, command: str) -> None:
    print()
    print(f"localagent agent benchmark, {datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} CPUs, {command}")
    width = max(len(r.name) for r in res.rows)
    vwidth = max(len(r.value) for r in res.rows)
    print(f"{'measure':<{width}}  {'result':>{vwidth}}  {'target':<14} verdict")
    print("-" * (width + vwidth + 26))
    for r in res.rows:
        verdict = "" if r.ok is None else ("ok" if r.ok else "MISS")
        print(f"{r.name:<{width}}  {r.value:>{vwidth}}  {r.target:<14} {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller counts (about a minute)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir with the agent logs")
    parser.add_argument(
        "--only",
        choices=("output", "rss", "throughput"),
        help="output: just the output overhead run; throughput: just the throughput runs (live, then queued); "
        "rss: the embedded runs and its RSS (no idle CPU wait, no agent-only part)",
    )
    args = parser.parse_args()
    scale = QUICK if args.quick else FULL
    work = Path(tempfile.mkdtemp(prefix="localagent-agent-bench-"))
    res = Results()
    try:
        if args.only is not None:
            run_only(args.only, work, scale, res)
        else:
            run_all(work, scale, res)
    finally:
        if args.keep:
            print(f"\nagent logs and databases kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    command = "python benchmarks/agent_bench.py" + (" --quick" if args.quick else "")
    print_table(res, scale, command + (f" --only {args.only}" if args.only else ""))


if __name__ == "__main__":
    main()
