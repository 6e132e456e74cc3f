"""A fleet on three simulated hosts (network namespaces, as tests/fleet/test_netns.py builds them): two
``localagent server`` processes on this host's side of the veths, one PostgreSQL database, and 3 x N
``localagent run`` agents inside the namespaces (half long-polling on server A, half on B). Needs root.

    python benchmarks/fleet_netns_bench.py                      # 3 x 5 agents, 1,000 runs
    python benchmarks/fleet_netns_bench.py --agents-per-host 20 --runs 3000 --idle-seconds 60

Measured, in this order:

- **idle**: every agent long-polling with nothing to do for ``--idle-seconds``: CPU of the two server
  processes, of the PostgreSQL backends serving this database (``pg_stat_activity``) and of the agents, in
  cores;
- **claim latency**: ``--samples`` runs created one at a time through server A (a pause between them, so
  none queues); from each run's state history, its ``created`` time to ``Submitted`` (claimed) and to
  ``Running`` (the agent started it and said so), p50/p99; half of the runs may go to any agent, the
  other half carry a label only the agents long-polling on server B have (the cross-server path);
- **throughput**: ``--runs`` runs of ``true`` created in one bulk request through A; runs/s from the first
  ``created`` to the last ``ended``, and the CPU each run cost the servers, PostgreSQL and the agents.

PostgreSQL comes from ``LOCALAGENT_TEST_POSTGRES_URL`` or ``--pg-url`` (a role that may create databases);
a fresh database is made and dropped. The namespaces and every process are removed at the end.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from fleet_bench import backend_pids, fresh_database, percentile  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from localagent.api.client import ApiClient  # noqa: E402
from localagent.api.models import FlowRun, FlowRunCreate, FlowSpec  # noqa: E402
from tests.fleet.netns import Network, netns_problem  # noqa: E402
from tests.fleet.processes import Fleet, all_runs, cpu_seconds  # noqa: E402


class CpuMeter:
    """CPU seconds of each server, the database's backends and the agents since :meth:`start`."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self._base: dict[int, float] = {}

    def _groups(self) -> dict[str, list[int]]:
        return {
            **{f"server {server.name.upper()}": [server.pid] for server in self.fleet.servers},
            "postgres": backend_pids(self.fleet.database_url),
            "agents (their own processes)": [agent.pid for agent in self.fleet.agents],
        }

    def start(self) -> None:
        self._base = {pid: cpu_seconds(pid) for pids in self._groups().values() for pid in pids}
        self._started = time.perf_counter()

    def read(self) -> tuple[float, dict[str, float]]:
        """(seconds elapsed, CPU seconds by group); a backend that appeared meanwhile counts in full."""
        used = {
            group: sum(cpu_seconds(pid) - self._base.get(pid, 0.0) for pid in pids)
            for group, pids in self._groups().items()
        }
        return time.perf_counter() - self._started, used


def start_fleet(fleet: Fleet, per_host: int, slots: int) -> None:
    hosts = fleet.net.hosts
    a = fleet.start_server("a", hosts[0])
    b = fleet.start_server("b", hosts[1])
    for host in hosts:
        for n in range(per_host):
            server = (a, b)[n % 2]
            name = f"h{host.index}-a{n}"
            fleet.start_agent(
                host, name, [server.url], labels=[f"server-{server.name}"], slots=slots, poll_interval="10s"
            )
    names = {agent.name for agent in fleet.agents}
    with ApiClient(a.url, key=fleet.key) as api:
        deadline = time.monotonic() + 180
        while not names <= {agent.name for agent in api.list_agents() if not agent.lost and agent.stopped is None}:
            if time.monotonic() > deadline or not all(agent.running() for agent in fleet.agents):
                sys.exit(f"the agents did not all register; logs in {fleet.workdir}")
            time.sleep(0.5)


def idle(fleet: Fleet, seconds: float) -> None:
    meter = CpuMeter(fleet)
    meter.start()
    time.sleep(seconds)
    elapsed, used = meter.read()
    cores = ", ".join(f"{group} {cpu / elapsed:.4f}" for group, cpu in used.items())
    print(f"idle, {len(fleet.agents)} agents long-polling for {elapsed:.0f} s, cores: {cores}")


def claim_latency(fleet: Fleet, samples: int, pause: float) -> None:
    """Every other run is labelled ``server-b``: only the agents long-polling on B may take it, so its
    claim always crosses from the server that created it to the other one."""
    with ApiClient(fleet.servers[0].url, key=fleet.key) as api:
        made: list[tuple[bool, str]] = []
        for n in range(samples):
            cross = n % 2 == 1
            request = FlowRunCreate(flow="noop", labels=["server-b"] if cross else [])
            made.append((cross, api.create_run(request).id))
            time.sleep(pause)
        runs = [(cross, wait_final(api, run_id)) for cross, run_id in made]
    for label, chosen in (
        ("any agent", [run for cross, run in runs if not cross]),
        ("only agents on B", [run for cross, run in runs if cross]),
    ):
        parts = []
        for state in ("Submitted", "Running"):
            ms = [(first_time(run, state) - run.created.timestamp()) * 1000 for run in chosen]
            parts.append(f"-> {state} p50 {percentile(ms, 0.5):.1f} ms p99 {percentile(ms, 0.99):.1f} ms")
        print(f"claim latency, {len(chosen)} runs created through A, taken by {label}: " + "; ".join(parts))


def wait_final(api: ApiClient, run_id: str) -> FlowRun:
    deadline = time.monotonic() + 120
    while not (run := api.get_run(run_id)).state.is_final:
        if time.monotonic() > deadline:
            sys.exit(f"run {run_id} is still {run.state.value} after 120 s")
        time.sleep(0.2)
    return run


def first_time(run: FlowRun, state: str) -> float:
    return next(record.time.timestamp() for record in run.history if record.state.value == state)


def final_count(database_url: str) -> int:
    """Final runs, read from the database itself: watching through the API would add to the servers' CPU."""
    engine = sa.create_engine(database_url, poolclass=NullPool)
    with engine.connect() as conn:
        count = conn.execute(
            sa.text("SELECT count(*) FROM flow_runs WHERE state IN ('Success', 'Failed', 'Cancelled', 'Crashed')")
        ).scalar_one()
    engine.dispose()
    return int(count)


def throughput(fleet: Fleet, count: int) -> None:
    meter = CpuMeter(fleet)
    with ApiClient(fleet.servers[0].url, key=fleet.key, timeout=120) as api:
        target = final_count(fleet.database_url) + count
        meter.start()
        for start in range(0, count, 10_000):
            api.create_runs([FlowRunCreate(flow="noop") for _ in range(min(10_000, count - start))])
        deadline = time.monotonic() + 30 + count / 5
        while final_count(fleet.database_url) < target and time.monotonic() < deadline:
            time.sleep(0.5)
        _elapsed, used = meter.read()
        runs = [run for run in all_runs(api)[:count] if run.ended is not None]  # newest first: this batch
    bad = [run for run in runs if run.state.value != "Success"]
    span = max(run.ended.timestamp() for run in runs if run.ended) - min(run.created.timestamp() for run in runs)
    per_run = ", ".join(f"{group} {cpu / count * 1000:.2f} ms" for group, cpu in used.items())
    print(
        f"throughput: {len(runs)} of {count} runs final ({len(bad)} not Success) in "
        f"{span:.1f} s = {len(runs) / span:.0f} runs/s; CPU per run: {per_run}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg-url", default=os.environ.get("LOCALAGENT_TEST_POSTGRES_URL", ""))
    parser.add_argument("--agents-per-host", type=int, default=5, help="agents in each of the 3 namespaces")
    parser.add_argument("--slots", type=int, default=4, help="max_concurrent_runs of each agent")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=100, help="runs created one at a time for the latency")
    parser.add_argument("--pause", type=float, default=0.2, help="seconds between them")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    args = parser.parse_args()
    if not args.pg_url:
        sys.exit("give --pg-url or set LOCALAGENT_TEST_POSTGRES_URL (a role that may create databases)")
    if problem := netns_problem():
        sys.exit(problem)
    with (
        tempfile.TemporaryDirectory(prefix="localagent-netns-bench-") as work,
        fresh_database(args.pg_url) as database_url,
        Network(hosts=3) as net,
    ):
        fleet = Fleet(net, Path(work), database_url, key=secrets.token_hex(16))
        try:
            start_fleet(fleet, args.agents_per_host, args.slots)
            print(
                f"3 hosts x {args.agents_per_host} agents (slots {args.slots}), servers A {fleet.servers[0].url}, "
                f"B {fleet.servers[1].url}, subnet {net.subnet}.0/24"
            )
            with ApiClient(fleet.servers[0].url, key=fleet.key) as api:
                api.register_flow(FlowSpec(name="noop", command=["true"]))
            time.sleep(3.0)  # every agent's first long-poll is waiting
            idle(fleet, args.idle_seconds)
            claim_latency(fleet, args.samples, args.pause)
            throughput(fleet, args.runs)
        finally:
            fleet.close()


if __name__ == "__main__":
    main()
