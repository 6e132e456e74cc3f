"""Schedules in the web view over HTTP: the flows page lists them with their next fire times, pauses and resumes
them; a run made by a schedule shows its schedule and fire time."""

from __future__ import annotations

import html as html_lib
import re
from datetime import datetime
from typing import Any

import requests

from localagent.server.runner import ServerThread
from tests.conftest import MakeApiServer
from tests.server.helpers import Http
from tests.support.wait import wait_for

NIGHTLY = {
    "name": "nightly",
    "cron": "30 2 * * *",
    "timezone": "Europe/Berlin",
    "overlap": "skip",
    "catchup": "all",
    "deadline": "10m",
}
# A daily interval anchored at 06:00 UTC: its next five times stay the same while the test runs.
DAILY = {"name": "daily", "interval": "1d", "anchor": "2024-01-01T06:00:00+00:00", "overlap": "queue"}


def page(server: ServerThread, path: str, **kwargs: Any) -> requests.Response:
    return requests.get(server.url + path, timeout=30, **kwargs)


def schedule_block(html: str, flow: str, name: str) -> str:
    """The HTML of one schedule on the flows page."""
    start = html.index(f'id="schedule-{flow}-{name}"')
    end = html.find('id="schedule-', start + 1)
    return html[start : end if end != -1 else html.index("</section>", start)]


def utc_text(value: str) -> str:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S UTC")


def test_flows_page_lists_each_schedule_with_the_apis_next_fire_times(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow(schedules=[NIGHTLY, DAILY])
    api = {s["name"]: s for s in http.ok("get", "/api/flows/hello/schedules")}
    html = page(api_server, "/flows").text

    nightly = schedule_block(html, "hello", "nightly")
    assert "cron 30 2 * * *" in nightly and "Europe/Berlin" in nightly and ">active<" in nightly
    assert "Overlap <b>skip</b> · catch-up <b>all</b> · deadline <b>10m</b>" in nightly
    assert 'action="/flows/hello/schedules/nightly/pause"' in nightly
    utc_shown = re.findall(r"<td>(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC)</td>", nightly)
    assert utc_shown == [utc_text(t) for t in api["nightly"]["next_times"]] and len(utc_shown) == 5
    local_shown = re.findall(r"<td>(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (?:CET|CEST))</td>", nightly)
    assert [text[:19] for text in local_shown] == [t[:19].replace("T", " ") for t in api["nightly"]["next_times_local"]]
    assert all(text[11:19] == "02:30:00" for text in local_shown)

    daily = schedule_block(html, "hello", "daily")
    assert "every 1d from 2024-01-01T06:00:00+00:00" in daily and "Overlap <b>queue</b>" in daily
    utc_shown = re.findall(r"<td>(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC)</td>", daily)
    assert utc_shown == [utc_text(t) for t in api["daily"]["next_times"]] and len(utc_shown) == 5
    assert "Next in" not in daily  # a UTC schedule shows its times once


def test_pause_and_resume_from_the_page_change_what_the_api_shows(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow(schedules=[NIGHTLY])
    url = f"{api_server.url}/flows/hello/schedules/nightly/pause"
    assert requests.post(url, timeout=30).status_code == 403  # no Origin: refused like cancel
    assert requests.post(url, headers={"Origin": "https://evil.example"}, timeout=30).status_code == 403
    assert http.ok("get", "/api/flows/hello/schedules")[0]["paused"] is False

    origin = {"Origin": api_server.url}
    paused = requests.post(url, headers=origin, allow_redirects=False, timeout=30)
    assert paused.status_code == 303 and paused.headers["location"] == "/flows#schedule-hello-nightly"
    state = http.ok("get", "/api/flows/hello/schedules")[0]
    assert state["paused"] is True and state["next_times"] == []
    block = schedule_block(page(api_server, "/flows").text, "hello", "nightly")
    assert ">paused<" in block and 'action="/flows/hello/schedules/nightly/resume"' in block and ">Resume<" in block
    assert "UTC</td>" not in block

    resumed = requests.post(url.replace("/pause", "/resume"), headers=origin, allow_redirects=False, timeout=30)
    assert resumed.status_code == 303
    state = http.ok("get", "/api/flows/hello/schedules")[0]
    assert state["paused"] is False and len(state["next_times"]) == 5
    assert ">Pause<" in schedule_block(page(api_server, "/flows").text, "hello", "nightly")

    missing = requests.post(f"{api_server.url}/flows/hello/schedules/nope/pause", headers=origin, timeout=30)
    assert missing.status_code == 404 and "has no schedule &#39;nope&#39;" in missing.text


def test_pausing_needs_the_login_cookie_when_the_server_has_keys(make_api_server: MakeApiServer) -> None:
    server = make_api_server(api_keys=("s3cret-key",))
    http = Http(server, key="s3cret-key")
    http.flow(schedules=[NIGHTLY])
    origin = {"Origin": server.url}
    url = f"{server.url}/flows/hello/schedules/nightly/pause"
    anonymous = requests.post(url, headers=origin, allow_redirects=False, timeout=30)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
    assert http.ok("get", "/api/flows/hello/schedules")[0]["paused"] is False
    session = requests.Session()
    session.post(server.url + "/login", data={"key": "s3cret-key"}, headers=origin, timeout=30)
    assert session.post(url, headers=origin, allow_redirects=False, timeout=30).status_code == 303
    assert http.ok("get", "/api/flows/hello/schedules")[0]["paused"] is True


def test_a_run_made_by_a_schedule_shows_its_schedule_and_fire_time(api_server: ServerThread) -> None:
    http = Http(api_server)
    # overlap "skip": runs are made at their fire time, never ahead (pausing withdraws runs made ahead), and
    # no agent runs them, so there stays one.
    http.flow("tick", schedules=[{"name": "every-second", "interval": "1s", "overlap": "skip"}])

    def scheduled_runs() -> list[dict[str, Any]]:
        return [r for r in http.ok("get", "/api/flow_runs?flow=tick") if r.get("schedule")]

    run = wait_for(scheduled_runs, what="a run made by the schedule tick/every-second")[0]
    http.ok("post", "/api/flows/tick/schedules/every-second/pause")
    assert run["schedule"] == "tick/every-second" and run["nominal_time"]
    html = page(api_server, f"/runs/{run['id']}").text
    assert '<a href="/flows#schedule-tick-every-second" id="run-schedule">tick/every-second</a>' in html
    assert f'<span id="nominal-time">{utc_text(run["nominal_time"])}</span>' in html
    listing = page(api_server, "/?flow=tick").text
    row = listing[listing.index(f'data-run="{run["id"]}"') :].split("</tr>")[0]
    assert "⏲ every-second" in row and utc_text(run["nominal_time"]) in html_lib.unescape(row)
    # A run started by hand has no schedule line.
    manual = http.run("tick")
    assert 'id="run-schedule"' not in page(api_server, f"/runs/{manual['id']}").text


def test_schedule_text_is_escaped(api_server: ServerThread) -> None:
    http = Http(api_server)
    attack = "<script>alert(1)</script>"
    http.flow(schedules=[{**NIGHTLY, "parameters": {"p": attack, attack: 1}}])
    html = page(api_server, "/flows").text
    assert attack not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in schedule_block(html, "hello", "nightly")
