"""Measure the web view: page render times with 100,000 runs and a run with 1,000,000 output lines, and weights.

    python benchmarks/web_bench.py [--runs 100000] [--lines 1000000] [--agents 50] [--repeat 20]

The rows are written straight into a SQLite file in a temp dir (the API would take minutes to create them),
then a ServerThread serves it on 127.0.0.1 and each page is fetched ``--repeat`` times over real HTTP with
one ``requests.Session``. The time printed is the client's (request sent to body read), so it includes
the loopback round trip and is an upper bound of the server's own render time; on a busy machine it also
includes waiting for a core, so the CPU time this process spent per request (server and client together)
is printed too. Sizes are of the HTML (plus, once, the two static assets a first visit loads).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import requests

from localagent.api.schedule_models import Catchup, Overlap, ScheduleSpec
from localagent.server.database import Database
from localagent.server.fire_times import fire_times
from localagent.server.runner import ServerThread
from localagent.server.tables import agents, flow_runs, flows, run_history, schedules

STATES = ["Success"] * 80 + ["Failed"] * 10 + ["Crashed", "Cancelled"] * 4 + ["Running", "Scheduled"]
FLOWS = [f"flow-{i:02d}" for i in range(20)]
SCHEDULES = [
    ScheduleSpec(name="nightly", cron="30 2 * * *", timezone="Europe/Berlin", overlap=Overlap.SKIP),
    ScheduleSpec(name="often", interval=900, catchup=Catchup.NONE),
]


def ts(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc)


def fill(url: str, runs: int, lines: int, agent_count: int) -> str:
    """Flows, agents, ``runs`` runs over the last 30 days (each with 4 history records), and one long run."""
    database = Database(url)
    now = time.time()
    rng = random.Random(7)
    with database.begin() as conn:
        spec = {"command": "echo hi", "run_config": {"env": {"API_TOKEN": "x"}}, "labels": ["base"]}
        timings = [SCHEDULES[0].model_dump(mode="json"), SCHEDULES[1].model_dump(mode="json")]
        conn.execute(
            flows.insert(),
            [
                {
                    "name": n,
                    "version": 1,
                    "spec": json.dumps({**spec, "name": n, "schedules": timings}),
                    "created": ts(now),
                }
                for n in FLOWS
            ],
        )
        # Two schedules a flow (one of them paused on every fourth flow), as the schedule store would keep them.
        conn.execute(
            schedules.insert(),
            [
                {
                    "id": f"{n}/{s.name}",
                    "flow": n,
                    "name": s.name,
                    "flow_version": 1,
                    "spec": json.dumps(s.model_dump(mode="json")),
                    "paused": s.name == "often" and i % 4 == 0,
                    "ahead": False,
                    "next_time": fire_times(s).next_after(datetime.fromtimestamp(now + 60, timezone.utc)),
                    "created": ts(now),
                    "updated": ts(now),
                }
                for i, n in enumerate(FLOWS)
                for s in SCHEDULES
            ],
        )
        conn.execute(
            agents.insert(),
            [
                {
                    "id": f"agent{i:04d}",
                    "name": f"host-{i:03d}",
                    "labels": '["base"]',
                    "run_unlabeled": False,
                    "run_config_types": '["universal", "local"]',
                    "hostname": f"host-{i:03d}.example",
                    "version": "0.1.0",
                    "config_generation": 3,
                    "config_hash": ("4b15" if i % 10 else "9c02") + "ab" * 30,
                    "config_error": None if i % 25 else "agent.toml: line 3: expected '='",
                    "running_runs": "[]",
                    "registered": ts(now - 3600),
                    "last_heartbeat": ts(now - rng.random() * 5),
                }
                for i in range(agent_count)
            ],
        )
    batch: list[dict[str, object]] = []
    history: list[dict[str, object]] = []
    long_run = ""
    for index in range(runs):
        created = now - 30 * 86400 + index * (30 * 86400 / runs)
        run_id = f"{index:032x}"
        state = rng.choice(STATES)
        started = None if state == "Scheduled" else created + 0.5
        ended = started + rng.random() * 60 if started is not None and state != "Running" else None
        batch.append(
            {
                "id": run_id,
                "name": f"run-{index}",
                "flow": FLOWS[index % len(FLOWS)],
                "flow_version": 1,
                "parameters": '{"day": "today"}',
                "labels": json.dumps(["base", f"team-{index % 7}"] + (["rare"] if index % 5000 == 0 else [])),
                "run_config_type": "universal",
                "scheduled_start": ts(created),
                "state": state,
                "state_message": "",
                "attempt": 1,
                "agent_id": f"agent{index % agent_count:04d}",
                "agent_name": f"host-{index % agent_count:03d}",
                "pid": 1000 + index,
                "exit_code": 0 if state == "Success" else (1 if state == "Failed" else None),
                "created": ts(created),
                "updated": ts(ended or created),
                "started": ts(started),
                "ended": ts(ended),
                # every third run made by its flow's interval schedule, for its creation time
                "schedule_id": f"{FLOWS[index % len(FLOWS)]}/often" if index % 3 == 0 else None,
                "nominal_time": ts(created) if index % 3 == 0 else None,
            }
        )
        for step, name in enumerate(("Scheduled", "Submitted", "Running", state)):
            history.append({"run_id": run_id, "state": name, "time": ts(created + step * 0.1), "message": "m"})
        long_run = run_id
        if len(batch) == 10_000:
            _flush(database, batch, history)
    _flush(database, batch, history)
    with database.begin() as conn:
        conn.execute(flow_runs.update().where(flow_runs.c.id == long_run).values(state="Running", ended=None))
    chunk = 50_000
    for start in range(0, lines, chunk):
        with database.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO run_logs (run_id, seq, time, stream, text) VALUES (?, ?, ?, ?, ?)",
                [
                    (long_run, seq, now, "stderr" if seq % 100 == 0 else "stdout", f"\x1b[32mline {seq}\x1b[0m work")
                    for seq in range(start, min(start + chunk, lines))
                ],
            )
    database.dispose()
    return long_run


def _flush(database: Database, batch: list[dict[str, object]], history: list[dict[str, object]]) -> None:
    if batch:
        with database.begin() as conn:
            conn.execute(flow_runs.insert(), batch)
            conn.execute(run_history.insert(), history)
    batch.clear()
    history.clear()


def measure(http: requests.Session, url: str, repeat: int) -> tuple[float, float, float, int]:
    """Median and max wall time, median CPU time of this process (server and client), and size of a page."""
    timings = []
    cpu = []
    size = 0
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        reply = http.get(url, timeout=60)
        timings.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
        reply.raise_for_status()
        size = len(reply.content)
    return statistics.median(timings), max(timings), statistics.median(cpu), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="localagent-web-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'web.db'}"
        started = time.perf_counter()
        long_run = fill(url, args.runs, args.lines, args.agents)
        print(f"filled {args.runs:,} runs, {args.lines:,} output lines in {time.perf_counter() - started:.0f}s")
        with ServerThread(address="127.0.0.1:0", database_url=url) as server:
            http = requests.Session()
            base = server.url
            first = http.get(base + "/", timeout=60).text
            older = first.split('href="/?before=', 1)[1].split('"', 1)[0].replace("&amp;", "&")
            deep = f"{base}/?before={5 * 86400 + time.time() - 30 * 86400!r}~{'0' * 32}"
            pages = {
                "runs, first page": base + "/",
                "runs, page 2 (keyset)": f"{base}/?before={older}",
                "runs, oldest page (keyset)": deep,
                "runs, state=Failed": base + "/?state=Failed",
                "runs, flow=flow-03": base + "/?flow=flow-03",
                "runs, agent=host-007": base + "/?agent=host-007",
                "runs, label=team-3": base + "/?label=team-3",
                "runs, label=rare (1 in 5,000)": base + "/?label=rare",
                "runs, state=Cancelling (none)": base + "/?state=Cancelling",
                "live refresh of the list": base + "/?live=1",
                f"run page, {args.lines:,} lines": f"{base}/runs/{long_run}",
                "run page, jump to the middle": f"{base}/runs/{long_run}?line={args.lines // 2}",
                "run page, search (whole output)": f"{base}/runs/{long_run}?q=line+999999",
                "run summary refresh (live=1)": f"{base}/runs/{long_run}?live=1",
                "flows (20, 40 schedules)": base + "/flows",
                f"agents ({args.agents})": base + "/agents",
            }
            print(f"{'page':40} {'median ms':>10} {'max ms':>8} {'CPU ms':>7} {'KB':>7}")
            for name, page_url in pages.items():
                median, worst, cpu, size = measure(http, page_url, args.repeat)
                print(f"{name:40} {median:10.1f} {worst:8.1f} {cpu:7.1f} {size / 1024:7.1f}")
            assets = sum(
                len(http.get(base + path, timeout=30).content) for path in ("/static/app.css", "/static/live.js")
            )
            print(f"static assets (app.css + live.js, loaded once, cached): {assets / 1024:.1f} KB")


if __name__ == "__main__":
    main()
