"""How long a trivial run's final state trails its Running report (the state batcher's linger window).

    python benchmarks/state_linger.py            # 40 runs of `true`, one at a time, embedded agent
    python benchmarks/state_linger.py --runs 100

Starts ``localagent run`` with the embedded API (as agent_bench.py does), creates runs of a flow whose command
is ``true`` one after the other, and reads each run's state history as the API stored it: the time from
Submitted to Running and from Submitted to the final state (Success). Prints the medians and p90s in ms.
Everything goes over HTTP, so the same script measures any version of the agent (``PYTHONPATH`` picks it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent_bench import embedded, pct, ts


def _stamp(run: dict[str, Any], state: str) -> float:
    for record in run["history"]:
        if record["state"] == state:
            return ts(record["time"])
    raise SystemExit(f"run {run['id']} has no {state} in its history: {run['history']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="linger-") as tmp, embedded(Path(tmp)) as (api, _agent):
        api.flow("trivial", ["true"])
        running: list[float] = []
        final: list[float] = []
        for _ in range(args.runs):
            created = api.create("trivial")
            run = api.wait_final(created["id"], poll=0.005)
            submitted = _stamp(run, "Submitted")
            running.append((_stamp(run, "Running") - submitted) * 1000)
            final.append((_stamp(run, run["state"]) - submitted) * 1000)
    gap = [f - r for f, r in zip(final, running, strict=True)]
    print(f"{args.runs} runs of `true` (ms after Submitted, as the API stored the states)")
    print(f"  Running   p50 {statistics.median(running):6.1f}   p90 {pct(running, 0.9):6.1f}")
    print(f"  final     p50 {statistics.median(final):6.1f}   p90 {pct(final, 0.9):6.1f}")
    print(f"  final - Running p50 {statistics.median(gap):6.1f}   p90 {pct(gap, 0.9):6.1f}")


if __name__ == "__main__":
    main()
