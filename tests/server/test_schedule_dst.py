"""Schedules through the daylight-saving changes of Europe/Berlin and America/New_York, by a stepped clock.

The expected UTC instants are worked out by hand from the zone rules (not by the library under test):

- Europe/Berlin 2026: spring forward on 29 March at 01:00Z (02:00 CET -> 03:00 CEST, UTC+1 -> +2),
  fall back on 25 October at 01:00Z (03:00 CEST -> 02:00 CET).
- America/New_York 2026: spring forward on 8 March at 07:00Z (02:00 EST -> 03:00 EDT, UTC-5 -> -4),
  fall back on 1 November at 06:00Z (02:00 EDT -> 01:00 EST).

Debian cron's rules: a fixed time in the skipped hour runs once, right after the jump (03:00 local); a
fixed time in the repeated hour runs once, at its first occurrence; a wildcard hour runs at every real
instant; an interval counts real elapsed time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.server.schedule_support import SimulatedServer, utc

CASES: list[tuple[str, dict[str, Any], datetime, datetime, list[str]]] = [
    (
        "berlin fixed 02:30, spring: the skipped 02:30 runs at 03:00 CEST",
        {"cron": "30 2 * * *", "timezone": "Europe/Berlin"},
        utc(2026, 3, 27, 12),
        utc(2026, 3, 30, 12),
        # 28 Mar 02:30 CET = 01:30Z; 29 Mar 03:00 CEST = 01:00Z; 30 Mar 02:30 CEST = 00:30Z
        ["2026-03-28T01:30Z", "2026-03-29T01:00Z", "2026-03-30T00:30Z"],
    ),
    (
        "berlin fixed 02:30, autumn: the repeated 02:30 runs once (CEST)",
        {"cron": "30 2 * * *", "timezone": "Europe/Berlin"},
        utc(2026, 10, 23, 12),
        utc(2026, 10, 26, 12),
        # 24 Oct 02:30 CEST = 00:30Z; 25 Oct 02:30 CEST = 00:30Z (not again at 02:30 CET = 01:30Z);
        # 26 Oct 02:30 CET = 01:30Z
        ["2026-10-24T00:30Z", "2026-10-25T00:30Z", "2026-10-26T01:30Z"],
    ),
    (
        "new york fixed 02:30, spring: the skipped 02:30 runs at 03:00 EDT",
        {"cron": "30 2 * * *", "timezone": "America/New_York"},
        utc(2026, 3, 6, 12),
        utc(2026, 3, 9, 12),
        # 7 Mar 02:30 EST = 07:30Z; 8 Mar 03:00 EDT = 07:00Z; 9 Mar 02:30 EDT = 06:30Z
        ["2026-03-07T07:30Z", "2026-03-08T07:00Z", "2026-03-09T06:30Z"],
    ),
    (
        "new york fixed 01:30, autumn: the repeated 01:30 runs once (EDT)",
        {"cron": "30 1 * * *", "timezone": "America/New_York"},
        utc(2026, 10, 30, 12),
        utc(2026, 11, 2, 12),
        # 31 Oct 01:30 EDT = 05:30Z; 1 Nov 01:30 EDT = 05:30Z (not 01:30 EST = 06:30Z); 2 Nov 01:30 EST = 06:30Z
        ["2026-10-31T05:30Z", "2026-11-01T05:30Z", "2026-11-02T06:30Z"],
    ),
    (
        "berlin wildcard hour */30, spring: every real half hour",
        {"cron": "*/30 * * * *", "timezone": "Europe/Berlin"},
        utc(2026, 3, 28, 23, 0),
        utc(2026, 3, 29, 3, 0),
        # local 00:30 01:00 01:30 CET | 03:00 03:30 04:00 04:30 05:00 CEST: no half hour lost
        [
            "2026-03-28T23:30Z",
            "2026-03-29T00:00Z",
            "2026-03-29T00:30Z",
            "2026-03-29T01:00Z",
            "2026-03-29T01:30Z",
            "2026-03-29T02:00Z",
            "2026-03-29T02:30Z",
            "2026-03-29T03:00Z",
        ],
    ),
    (
        "berlin wildcard hour */30, autumn: every real half hour, the repeated hour too",
        {"cron": "*/30 * * * *", "timezone": "Europe/Berlin"},
        utc(2026, 10, 24, 23, 0),
        utc(2026, 10, 25, 3, 0),
        # local 01:30 02:00 02:30 CEST | 02:00 02:30 03:00 03:30 04:00 CET: each instant once
        [
            "2026-10-24T23:30Z",
            "2026-10-25T00:00Z",
            "2026-10-25T00:30Z",
            "2026-10-25T01:00Z",
            "2026-10-25T01:30Z",
            "2026-10-25T02:00Z",
            "2026-10-25T02:30Z",
            "2026-10-25T03:00Z",
        ],
    ),
    (
        "new york wildcard hour */20, spring",
        {"cron": "*/20 * * * *", "timezone": "America/New_York"},
        utc(2026, 3, 8, 6, 0),
        utc(2026, 3, 8, 8, 0),
        # local 01:20 01:40 EST | 03:00 03:20 03:40 04:00 EDT
        [
            "2026-03-08T06:20Z",
            "2026-03-08T06:40Z",
            "2026-03-08T07:00Z",
            "2026-03-08T07:20Z",
            "2026-03-08T07:40Z",
            "2026-03-08T08:00Z",
        ],
    ),
    (
        "new york wildcard hour */20, autumn",
        {"cron": "*/20 * * * *", "timezone": "America/New_York"},
        utc(2026, 11, 1, 5, 0),
        utc(2026, 11, 1, 7, 0),
        # local 01:20 01:40 EDT | 01:00 01:20 01:40 02:00 EST
        [
            "2026-11-01T05:20Z",
            "2026-11-01T05:40Z",
            "2026-11-01T06:00Z",
            "2026-11-01T06:20Z",
            "2026-11-01T06:40Z",
            "2026-11-01T07:00Z",
        ],
    ),
    (
        "berlin fixed hours 1-3 on the hour, autumn: 02:00 once",
        {"cron": "0 1-3 * * *", "timezone": "Europe/Berlin"},
        utc(2026, 10, 24, 22, 30),
        utc(2026, 10, 25, 2, 30),
        # 01:00 CEST = 23:00Z; 02:00 CEST = 00:00Z (not 02:00 CET = 01:00Z); 03:00 CET = 02:00Z
        ["2026-10-24T23:00Z", "2026-10-25T00:00Z", "2026-10-25T02:00Z"],
    ),
    (
        "berlin interval 45m, spring: 45 real minutes apart across the jump",
        {"interval": "45m", "anchor": "2026-03-29T00:10:00+01:00", "timezone": "Europe/Berlin"},
        utc(2026, 3, 28, 23, 0),
        utc(2026, 3, 29, 3, 0),
        # anchor 00:10 CET = 23:10Z; + 45m each: local 00:55 01:40 CET | 03:25 04:10 04:55 CEST
        [
            "2026-03-28T23:10Z",
            "2026-03-28T23:55Z",
            "2026-03-29T00:40Z",
            "2026-03-29T01:25Z",
            "2026-03-29T02:10Z",
            "2026-03-29T02:55Z",
        ],
    ),
    (
        "berlin interval 45m, autumn",
        {"interval": "45m", "anchor": "2026-10-25T01:10:00+02:00", "timezone": "Europe/Berlin"},
        utc(2026, 10, 24, 23, 0),
        utc(2026, 10, 25, 2, 30),
        # anchor 01:10 CEST = 23:10Z; local 01:55 02:40 CEST | 02:25 03:10 CET
        ["2026-10-24T23:10Z", "2026-10-24T23:55Z", "2026-10-25T00:40Z", "2026-10-25T01:25Z", "2026-10-25T02:10Z"],
    ),
    (
        "new york interval 1h, autumn: the repeated 01:30 runs twice because two real hours pass",
        {"interval": "1h", "anchor": "2026-11-01T00:30:00-04:00", "timezone": "America/New_York"},
        utc(2026, 11, 1, 4, 0),
        utc(2026, 11, 1, 8, 0),
        # 00:30 EDT = 04:30Z, 01:30 EDT = 05:30Z, 01:30 EST = 06:30Z, 02:30 EST = 07:30Z
        ["2026-11-01T04:30Z", "2026-11-01T05:30Z", "2026-11-01T06:30Z", "2026-11-01T07:30Z"],
    ),
    (
        "new york interval 1h, spring: hourly in real time across the jump",
        {"interval": "1h", "anchor": "2026-03-08T00:30:00-05:00", "timezone": "America/New_York"},
        utc(2026, 3, 8, 5, 0),
        utc(2026, 3, 8, 9, 0),
        # 00:30 EST = 05:30Z, 01:30 EST = 06:30Z, 03:30 EDT = 07:30Z, 04:30 EDT = 08:30Z
        ["2026-03-08T05:30Z", "2026-03-08T06:30Z", "2026-03-08T07:30Z", "2026-03-08T08:30Z"],
    ),
]


@pytest.mark.parametrize(("title", "schedule", "start", "end", "expected"), CASES, ids=[c[0] for c in CASES])
def test_due_time_ticks_match_the_table(
    tmp_path: Path, title: str, schedule: dict[str, Any], start: datetime, end: datetime, expected: list[str]
) -> None:
    sim = SimulatedServer(tmp_path, start)
    try:
        sim.flow(schedules=[schedule])
        sim.run_until(end)
        assert sim.nominal_times() == expected, title
    finally:
        sim.close()


@pytest.mark.parametrize(("title", "schedule", "start", "end", "expected"), [CASES[1], CASES[5], CASES[11]])
def test_minute_ticks_match_the_table(
    tmp_path: Path, title: str, schedule: dict[str, Any], start: datetime, end: datetime, expected: list[str]
) -> None:
    """Ticking every simulated minute (runs made up to a minute late) gives the same runs."""
    sim = SimulatedServer(tmp_path, start)
    try:
        sim.flow(schedules=[schedule])
        sim.step_until(end, timedelta(minutes=1))
        assert sim.nominal_times() == expected, title
    finally:
        sim.close()
