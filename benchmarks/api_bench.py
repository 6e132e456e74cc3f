"""Measure the API server: run creation, claims, state reports and log lines per second (SQLite in a temp dir).

    python benchmarks/api_bench.py [--runs 2000] [--slots 16] [--log-lines 100000] [--batch 1000]

Everything goes over real HTTP (one ``requests.Session``, one request at a time) to a ServerThread on
127.0.0.1, as an agent would talk to it. The client runs in the same process as the server, as in the
embedded mode, so its own work (building and encoding JSON) shares the GIL with the server: the log
figure is printed both with the batches encoded inside the timing (like a client that encodes per call)
and with bodies encoded beforehand (the server's own rate).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import requests

from localagent.api.models import FlowRunCreate
from localagent.server.runner import ServerThread


def bench(runs: int, slots: int, log_lines: int, batch: int) -> None:
    with (
        tempfile.TemporaryDirectory(prefix="localagent-bench-") as tmp,
        ServerThread(address="127.0.0.1:0", database_url=f"sqlite:///{Path(tmp) / 'bench.db'}") as server,
    ):
        http = requests.Session()
        url = server.url
        http.post(f"{url}/api/flows", json={"name": "bench", "command": "true"}, timeout=30).raise_for_status()

        started = time.perf_counter()
        for _ in range(200):
            http.post(f"{url}/api/flow_runs", json={"flow": "bench"}, timeout=30).raise_for_status()
        create_rate = 200 / (time.perf_counter() - started)
        store = server.app.state.services.runs
        for _ in range(runs - 200):
            store.create(FlowRunCreate(flow="bench"))

        agent = http.post(f"{url}/api/agents", json={"name": "bench"}, timeout=30).json()["id"]
        claimed, requests_made, first_run = 0, 0, ""
        started = time.perf_counter()
        while True:
            reply = http.post(f"{url}/api/agents/{agent}/claim", json={"slots": slots}, timeout=30)
            reply.raise_for_status()
            requests_made += 1
            got = reply.json()["runs"]
            if not got:
                break
            first_run = first_run or got[0]["run"]["id"]
            claimed += len(got)
        claim_seconds = time.perf_counter() - started

        single = []
        for _ in range(20):
            store.create(FlowRunCreate(flow="bench"))
            t0 = time.perf_counter()
            http.post(f"{url}/api/agents/{agent}/claim", json={"slots": 1}, timeout=30).raise_for_status()
            single.append(time.perf_counter() - t0)

        state_latency = []
        for run in http.get(f"{url}/api/flow_runs", params={"state": "Submitted", "limit": 200}, timeout=30).json():
            for body in ({"state": "Running", "pid": 1}, {"state": "Success", "exit_code": 0}):
                t0 = time.perf_counter()
                http.post(f"{url}/api/flow_runs/{run['id']}/state", json=body, timeout=30).raise_for_status()
                state_latency.append(time.perf_counter() - t0)

        def batches(first_seq: int) -> list[list[dict[str, object]]]:
            now = datetime.now(timezone.utc).isoformat()
            return [
                [
                    {"seq": seq, "time": now, "stream": "stdout", "text": f"line {seq} of the benchmark output"}
                    for seq in range(offset, min(offset + batch, first_seq + log_lines))
                ]
                for offset in range(first_seq, first_seq + log_lines, batch)
            ]

        logs_url = f"{url}/api/flow_runs/{first_run}/logs"
        started = time.perf_counter()
        for lines in batches(0):
            http.post(logs_url, json={"lines": lines}, timeout=60).raise_for_status()
        log_seconds = time.perf_counter() - started
        bodies = [json.dumps({"lines": lines}).encode() for lines in batches(log_lines)]
        headers = {"Content-Type": "application/json"}
        started = time.perf_counter()
        for body in bodies:
            http.post(logs_url, data=body, headers=headers, timeout=60).raise_for_status()
        encoded_seconds = time.perf_counter() - started
        started = time.perf_counter()
        after, read = -1, 0
        while True:
            page = http.get(logs_url, params={"after": after, "limit": batch}, timeout=60).json()
            read += len(page["lines"])
            after = page["next_after"]
            if not page["lines"]:
                break
        read_seconds = time.perf_counter() - started

    print(f"runs created over HTTP:  {create_rate:8.0f} /s (one request each)")
    print(
        f"claims:                  {claimed / claim_seconds:8.0f} runs/s ({claimed} runs, slots={slots}, "
        f"{requests_made} requests, {claim_seconds * 1000 / requests_made:.1f} ms per request)"
    )
    print(f"claim of 1 waiting run:  {sorted(single)[len(single) // 2] * 1000:8.1f} ms median")
    state_latency.sort()
    print(
        f"state reports:           {len(state_latency) / sum(state_latency):8.0f} /s "
        f"(p50 {state_latency[len(state_latency) // 2] * 1000:.1f} ms, Running then Success)"
    )
    print(f"log lines stored:        {log_lines / log_seconds:8.0f} lines/s (batches of {batch}, encoded per call)")
    print(f"log lines stored:        {log_lines / encoded_seconds:8.0f} lines/s (batches of {batch}, pre-encoded)")
    print(f"log lines read:          {read / read_seconds:8.0f} lines/s (pages of {batch})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--log-lines", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    bench(args.runs, args.slots, args.log_lines, args.batch)


if __name__ == "__main__":
    main()
