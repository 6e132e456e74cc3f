"""localagent vs Prefect's own process worker on one Prefect 3 server: pickup latency, throughput, idle cost.

    LOCALAGENT_TEST_PREFECT_PYTHON=/path/to/venv/bin/python python benchmarks/prefect_bench.py
    ... --runs 100 --limits 4 16          # the full comparison (long: every run starts a Python with prefect)
    ... --runs 12 --limits 4              # a quick look
    ... --kinds prefect --runs 40         # one worker kind only

One ``prefect server start`` (temporary PREFECT_HOME, SQLite, loopback). For each worker kind and limit, a
fresh pool and deployment of a trivial flow, the worker started (``localagent run`` with ``api.kind =
"prefect"``, or ``prefect worker start --pool P --type process --limit N`` at its default 10 s poll), idle
for 10 s (RSS and CPU of the worker process measured from /proc), then ``--runs`` runs created at once.

- pickup: ``--latency-runs`` runs created one after another (each waited for, so every slot is free): the
  run's Pending state time (the worker's claim, right before it starts the process) minus the run's expected
  start time, read back from the server's state history; "Running p50" is the same up to the engine's
  Running state (the process started and its Python with prefect imported: the flow run's own start-up);
- throughput: runs completed per second, from the first run created to the last run completed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.prefect.support import PrefectServer  # noqa: E402

LOCALAGENT = shutil.which("localagent") or str(Path(sys.executable).with_name("localagent"))
CLK = os.sysconf("SC_CLK_TCK")
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _when(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _proc_stats(pid: int) -> tuple[float, float]:
    """(RSS MiB, CPU seconds) of ``pid`` from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK
    rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return rss_pages * os.sysconf("SC_PAGE_SIZE") / 2**20, cpu


def _start_worker(kind: str, server: PrefectServer, pool: str, limit: int, workdir: Path) -> subprocess.Popen[bytes]:
    log = open(workdir / f"{kind}-{pool}.log", "wb")  # noqa: SIM115  (lives as long as the worker)
    if kind == "localagent":
        config = workdir / f"{pool}.toml"
        config.write_text(
            f'[agent]\nname = "la-bench"\nmax_concurrent_runs = {limit}\nstate_dir = "{workdir / pool}"\n'
            f'hostname_label = false\n[api]\nkind = "prefect"\nurl = "{server.url}"\n'
            f'[prefect]\nwork_pool = "{pool}"\ncommand = ["{server.python}", "-m", "prefect.engine"]\n'
        )
        argv = [LOCALAGENT, "run", "-c", str(config)]
    else:
        server.call("POST", "/work_pools/", {"name": pool, "type": "process"})
        argv = [server.python, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"]
        argv += ["--limit", str(limit), "--name", "prefect-bench"]
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=server.env, start_new_session=True)


def measure(
    kind: str, server: PrefectServer, runs: int, limit: int, workdir: Path, latency_runs: int
) -> dict[str, float]:
    pool = f"bench-{kind}-{limit}-{int(time.time())}"  # (pool names starting with "prefect" are reserved)
    worker = _start_worker(kind, server, pool, limit, workdir)
    try:
        time.sleep(8)  # start-up
        _rss0, cpu0 = _proc_stats(worker.pid)
        time.sleep(10)
        rss, cpu1 = _proc_stats(worker.pid)
        deployment = server.deployment(pool, workdir)
        pickups, starts = [], []
        for _ in range(latency_runs):  # one at a time, every slot free: the wait is the worker's alone
            run_id = server.create_run(deployment)
            run = server.wait_state(run_id, FINAL, 600)
            states = server.call("GET", f"/flow_run_states/?flow_run_id={run_id}")
            due = _when(run["expected_start_time"])
            pickups.append(min(_when(s["timestamp"]) for s in states if s["type"] == "PENDING") - due)
            starts.append(min(_when(s["timestamp"]) for s in states if s["type"] == "RUNNING") - due)
        pickups.sort()
        starts.sort()
        began = time.time()
        ids = [server.create_run(deployment) for _ in range(runs)]
        ended = [server.wait_state(run_id, FINAL, 3600) for run_id in ids]
        finished = max(_when(run["end_time"] or run["state"]["timestamp"]) for run in ended)
        completed = sum(run["state"]["type"] == "COMPLETED" for run in ended)
        return {
            "completed": completed,
            "pickup_p50": statistics.median(pickups),
            "pickup_p99": pickups[min(len(pickups) - 1, int(len(pickups) * 0.99))],
            "running_p50": statistics.median(starts),
            "throughput": runs / (finished - began),
            "idle_rss_mib": rss,
            "idle_cpu_pct": 100 * (cpu1 - cpu0) / 10,
        }
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--limits", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--latency-runs", type=int, default=10, help="runs created one at a time for pickup")
    parser.add_argument("--kinds", nargs="+", default=["localagent", "prefect"], choices=["localagent", "prefect"])
    args = parser.parse_args()
    python = os.environ.get("LOCALAGENT_TEST_PREFECT_PYTHON")
    if not python:
        sys.exit("set LOCALAGENT_TEST_PREFECT_PYTHON to a python that has prefect==3.9.1")
    with tempfile.TemporaryDirectory(prefix="prefect-bench-") as tmp:
        workdir = Path(tmp)
        server = PrefectServer(python, workdir)
        server.start()
        try:
            print(
                f"{'worker':<11} {'limit':>5} {'done':>5} {'pickup p50':>11} {'p99':>7} {'Running p50':>12} "
                f"{'runs/s':>7} {'idle RSS':>9} {'idle CPU':>9}"
            )
            for limit in args.limits:
                for kind in args.kinds:
                    r = measure(kind, server, args.runs, limit, workdir, args.latency_runs)
                    print(
                        f"{kind:<11} {limit:>5} {int(r['completed']):>5} {r['pickup_p50']:>10.2f}s "
                        f"{r['pickup_p99']:>6.2f}s {r['running_p50']:>11.2f}s {r['throughput']:>7.2f} "
                        f"{r['idle_rss_mib']:>7.1f}Mi "
                        f"{r['idle_cpu_pct']:>8.2f}%",
                        flush=True,
                    )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
