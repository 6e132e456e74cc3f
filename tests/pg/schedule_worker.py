"""One simulated server process for the exactly-once test: its own stores on the shared database and a
clock that runs ``SPEED`` times faster than real time from a common origin, so that two worker processes
share one simulated time (as NTP-synchronised servers share one real time) and race for the same due rows.

Usage: ``python -m tests.pg.schedule_worker URL START_ISO END_ISO SPEED``: prints ``ready`` once its stores
are open, reads the common origin (epoch seconds) from stdin, runs the day and prints how many runs it made.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timedelta

from localagent.server.services import Services
from localagent.server.settings import ServerSettings
from tests.server.schedule_support import StepClock


def main(url: str, start: str, end: str, speed: str) -> None:
    begin, finish = datetime.fromisoformat(start), datetime.fromisoformat(end)
    clock = StepClock(begin)
    services = Services.build(ServerSettings(database_url=url), clock=clock)
    print("ready", flush=True)
    origin = sys.stdin.readline().strip()
    made = 0
    while clock.now < finish:
        elapsed = max(0.0, time.time() - float(origin)) * float(speed)
        clock.now = min(finish, begin + timedelta(seconds=elapsed))
        made += len(services.scheduler.tick().created)
        time.sleep(0.005)
    services.database.dispose()
    print(made)


if __name__ == "__main__":
    main(*sys.argv[1:5])
