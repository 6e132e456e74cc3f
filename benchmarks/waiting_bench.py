"""Measure what explaining waiting runs (``FlowRun.waiting``) adds to a read of runs.

    python benchmarks/waiting_bench.py [--runs 1000] [--agents 20] [--page 100] [--repeat 30]

A server's stores on SQLite in a temp dir hold ``--runs`` due Scheduled runs (labelled so that no agent
matches: the costliest answer short of the capacity check) and ``--agents`` online agents with labels and
a cap. For a page of ``--page`` runs it prints the fastest of ``--repeat`` reads of the page itself
(``RunStore.list_runs`` without the explanation) and of the explanation added to it, twice: runs sharing
7 label sets (a listing usually holds few), and every run with labels of its own (the worst case). The
fastest, not the mean, since the machine is shared. Claims, run creation and state reports never compute it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from localagent.api.models import AgentRegister, FlowRunCreate, FlowSpec
from localagent.server.services import Services, utc_now
from localagent.server.settings import ServerSettings


def bench(runs: int, agents: int, page: int, repeat: int, label_sets: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="localagent-bench-") as tmp:
        services = Services.build(ServerSettings(database_url=f"sqlite:///{Path(tmp) / 'bench.db'}"))
        try:
            services.flows.register(FlowSpec(name="bench", command="true"))
            for index in range(runs):
                services.runs.create(FlowRunCreate(flow="bench", labels=["gpu", f"l{index % label_sets}"]))
            for index in range(agents):
                services.agents.register(
                    AgentRegister(name=f"agent-{index}", labels=["etl", f"l{index % 7}"], max_concurrent_runs=4)
                )
            explainer = services.runs._waiting
            assert explainer is not None
            services.runs._waiting = None
            reads, explained = [], []
            for _ in range(repeat):
                started = time.perf_counter()
                listed = services.runs.list_runs(limit=page)
                reads.append(time.perf_counter() - started)
                with services.database.connect() as conn:
                    started = time.perf_counter()
                    explainer.annotate(conn, listed, utc_now())
                    explained.append(time.perf_counter() - started)
            assert all(run.waiting is not None for run in listed)
            return min(reads) * 1000, min(explained) * 1000
        finally:
            services.database.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--page", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    print(f"{args.runs} due Scheduled runs, {args.agents} online agents, pages of {args.page}")
    for label_sets, what in ((7, "7 label sets"), (args.runs, "labels of their own")):
        read, added = bench(args.runs, args.agents, args.page, args.repeat, label_sets)
        print(f"  runs with {what:20}: read the page {read:6.2f} ms, explain it +{added:5.2f} ms")
