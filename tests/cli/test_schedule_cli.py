"""Schedules through the installed binary and the HTTP API of a real server (real clock, no waiting)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from tests.cli.api_cli_support import cli, cli_json

FLOWS_TOML = """\
[[flow]]
name = "report"
command = "echo report"

[[flow.schedules]]
name = "night"
cron = "30 2 * * *"
timezone = "Europe/Berlin"
overlap = "skip"

[[flow.schedules]]
interval = "15m"
"""


def test_apply_then_ls_shows_the_next_five_times_in_zone_and_utc(api_server: Any, tmp_path: Path) -> None:
    flows = tmp_path / "flows.toml"
    flows.write_text(FLOWS_TOML)
    assert cli(api_server.url, "flow", "apply", "-f", str(flows)).returncode == 0
    listing = cli(api_server.url, "flow", "schedule", "ls")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["SCHEDULE", "WHEN", "TIME", "ZONE", "OVERLAP", "CATCH-UP", "STATE"]
    assert "report/night  cron 30 2 * * *" in listing.stdout and "Europe/Berlin" in listing.stdout
    assert "report/2" in listing.stdout and "every 15m" in listing.stdout
    night = [line for line in lines if line.startswith("report/night ") and "UTC" in line]
    assert len(night) == 5
    # 02:30 Berlin is 00:30 or 01:30 UTC, depending on the season (03:00 on the day clocks go forward)
    assert all(
        ("02:30:00 CET" in line and "01:30:00 UTC" in line)
        or ("02:30:00 CEST" in line and "00:30:00 UTC" in line)
        or ("03:00:00 CEST" in line and "01:00:00 UTC" in line)
        for line in night
    ), night
    as_json = cli_json(api_server.url, "flow", "schedule", "ls", "report")
    assert [s["id"] for s in as_json] == ["report/2", "report/night"]
    assert len(as_json[0]["next_times"]) == 5 and as_json[1]["spec"]["overlap"] == "skip"


def test_register_with_cron_flags_then_pause_and_resume(api_server: Any) -> None:
    url = api_server.url
    made = cli(url, "flow", "register", "tick", "-c", "true", "--cron", "@hourly", "--timezone", "America/New_York")
    assert made.returncode == 0, made.stderr
    [schedule] = cli_json(url, "flow", "schedule", "ls", "tick")
    assert schedule["spec"]["cron"] == "0 * * * *" and schedule["spec"]["timezone"] == "America/New_York"
    shown = cli(url, "flow", "show", "tick")
    assert "schedules:" in shown.stdout and "1: cron 0 * * * * (America/New_York)" in shown.stdout
    paused = cli(url, "flow", "schedule", "pause", "tick")
    assert paused.returncode == 0 and paused.stdout.strip() == "paused schedule tick/1"
    [schedule] = cli_json(url, "flow", "schedule", "ls", "tick")
    assert schedule["paused"] is True and schedule["next_times"] == []
    resumed = cli(url, "flow", "schedule", "resume", "tick", "1")
    assert resumed.returncode == 0 and resumed.stdout.startswith("resumed schedule tick/1; next run at ")


def test_bad_schedules_are_refused_naming_the_field(api_server: Any, tmp_path: Path) -> None:
    url = api_server.url
    bad_cron = cli(url, "flow", "register", "x", "-c", "true", "--cron", "61 * * * *")
    assert bad_cron.returncode == 2 and "--cron" in bad_cron.stderr and "bad minute" in bad_cron.stderr
    bad_zone = cli(url, "flow", "register", "x", "-c", "true", "--cron", "* * * * *", "--timezone", "Mars/Base")
    assert (
        bad_zone.returncode == 2
        and "--timezone" in bad_zone.stderr
        and "unknown time zone 'Mars/Base'" in bad_zone.stderr
    )
    flows = tmp_path / "flows.toml"
    flows.write_text(
        '[[flow]]\nname = "x"\ncommand = "true"\n\n[[flow.schedules]]\ncron = "* * *"\ntimezone = "Nowhere"\n'
    )
    applied = cli(url, "flow", "apply", "-f", str(flows))
    assert applied.returncode == 1
    assert f"{flows}:6: flow['x'].schedules[0].cron: a cron expression has 5 fields" in applied.stderr
    assert f"{flows}:7: flow['x'].schedules[0].timezone: unknown time zone 'Nowhere'" in applied.stderr
    reply = requests.post(
        url + "/api/flows",
        json={"name": "x", "command": "true", "schedules": [{"cron": "0 9 * * xyz"}]},
        timeout=10,
    )
    assert reply.status_code == 422
    assert reply.json()["detail"].startswith("body.schedules.0.cron: invalid cron expression '0 9 * * xyz'")
    reply = requests.post(
        url + "/api/flows",
        json={"name": "x", "command": "true", "schedules": [{"interval": 60, "timezone": "X/Y"}]},
        timeout=10,
    )
    assert reply.status_code == 422 and "body.schedules.0.timezone: unknown time zone 'X/Y'" in reply.json()["detail"]
    missing = cli(url, "flow", "schedule", "pause", "nope")
    assert missing.returncode == 1 and "flow 'nope' not found" in missing.stderr
    assert requests.post(url + "/api/flows/x/schedules/1/pause", timeout=10).status_code == 404


def test_a_scheduled_run_names_its_schedule_in_flow_run_show_and_ls(api_server: Any) -> None:
    url = api_server.url
    assert cli(url, "flow", "register", "fast", "-c", "true", "--interval", "1s").returncode == 0
    import time

    deadline = time.monotonic() + 30
    runs: list[Any] = []
    while not runs and time.monotonic() < deadline:
        runs = cli_json(url, "flow-run", "ls", "--flow", "fast")
        time.sleep(0.2)
    assert runs and runs[0]["schedule"] == "fast/1" and runs[0]["nominal_time"]
    listing = cli(url, "flow-run", "ls", "--flow", "fast")
    assert "SCHEDULE " in listing.stdout and "fast/1" in listing.stdout
    shown = cli(url, "flow-run", "show", runs[0]["id"])
    assert "schedule:" in shown.stdout and "fast/1, fire time " in shown.stdout
    cli(url, "flow", "schedule", "pause", "fast")
