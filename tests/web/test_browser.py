"""The web view in a real browser (headless Chromium), against a real `localagent run` with its embedded API.

Skipped with the reason when Debian's chromium / chromium-driver are not installed.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

from localagent.api.models import FlowRunCreate, FlowSpec, StateName
from localagent.api.schedule_models import Overlap, ScheduleSpec
from tests.conftest import MakeApiServer
from tests.reload.agent_process import AgentProcess, localagent_command
from tests.server.helpers import Http
from tests.web.browser import chromium, eventually, mark_page, no_alert, page_was_reloaded, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SIX_HOURLY_ANCHOR = datetime(2024, 1, 1, 0, 15, tzinfo=timezone.utc)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path) as driver:
        yield driver


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    with AgentProcess(tmp_path_factory.mktemp("web-agent"), labels=["base"], poll_interval="0.5s") as process:
        yield process


def cli(agent: AgentProcess, *args: str) -> str:
    done = subprocess.run(
        [*localagent_command(), *args, "--api", agent.api_url], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def badge(browser: Any, css: str = ".run-title .badge") -> str:
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.CSS_SELECTOR, css).text)


def text_of(browser: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.CSS_SELECTOR, css).text)


def test_a_run_from_the_cli_appears_and_succeeds_on_the_open_list(browser: Any, agent: AgentProcess) -> None:
    cli(agent, "flow", "register", "web-hello", "-c", "echo hello; sleep 1; echo bye", "--label", "base")
    browser.get(agent.api_url + "/")
    mark_page(browser)
    run = json.loads(cli(agent, "flow", "run", "web-hello", "--json"))
    row = f'tr[data-run="{run["id"]}"]'
    eventually(lambda: text_of(browser, row), what="the new run to appear on the list")
    eventually(lambda: "Success" in text_of(browser, row), what="the run to show Success")
    assert not page_was_reloaded(browser)
    assert "web-hello" in text_of(browser, row)
    assert f"web view: {agent.api_url}/ " in agent.log()  # what `localagent run` prints at start


def test_output_follows_live_while_the_run_goes_on(browser: Any, agent: AgentProcess, tmp_path: Path) -> None:
    cli(
        agent,
        *("flow", "register", "web-ticks", "--label", "base"),
        *("-c", "for i in $(seq 1 12); do echo tick $i; sleep 0.5; done; echo 'oops' >&2; echo all done"),
    )
    with agent.client() as api:
        run = api.create_run(FlowRunCreate(flow="web-ticks", name="ticking"))
    browser.get(f"{agent.api_url}/runs/{run.id}")
    mark_page(browser)
    partial = eventually(
        lambda: (text := text_of(browser, "#output")) and "tick 2" in text and "all done" not in text and text,
        what="some output to arrive while the run is still going",
    )
    assert "tick 12" not in partial
    eventually(lambda: "all done" in text_of(browser, "#output"), what="the last line")
    eventually(lambda: badge(browser) == "Success", what="the badge to show Success")
    assert "oops" in text_of(browser, "#output .ln.stderr")
    assert not page_was_reloaded(browser)
    screenshot(browser, tmp_path, "run")


def test_the_cancel_button_stops_a_running_run(browser: Any, agent: AgentProcess) -> None:
    from selenium.webdriver.common.by import By

    with agent.client() as api:
        api.register_flow(FlowSpec(name="web-sleep", command="echo sleeping; sleep 60", labels=["base"]))
        run = api.create_run(FlowRunCreate(flow="web-sleep"))
        browser.get(f"{agent.api_url}/runs/{run.id}")
        eventually(lambda: badge(browser) == "Running", what="the run to be Running")
        browser.find_element(By.ID, "cancel").click()
        eventually(lambda: badge(browser) == "Cancelled", what="the page to show Cancelled")
        assert api.get_run(run.id).state == StateName.CANCELLED


def test_a_config_error_shows_on_the_fleet_page_and_clears(browser: Any, agent: AgentProcess, tmp_path: Path) -> None:
    browser.get(agent.api_url + "/agents")
    mark_page(browser)
    assert "online" in text_of(browser, "#fleet")
    good = agent.config.read_text()
    try:
        with agent.config.open("a") as handle:
            handle.write("labels = = [\n")
        eventually(lambda: "Config error on reload-test" in text_of(browser, "#fleet"), what="the error to show")
        assert "agent.toml" in text_of(browser, ".config-error")
        screenshot(browser, tmp_path, "agents-error")
    finally:
        agent.config.write_text(good)
    eventually(lambda: "Config error" not in text_of(browser, "#fleet"), what="the error to clear")
    assert not page_was_reloaded(browser)


def test_script_in_a_run_name_parameter_or_output_executes_nothing(browser: Any, agent: AgentProcess) -> None:
    attack = "<script>alert(1)</script>"
    with agent.client() as api:
        api.register_flow(
            FlowSpec(
                name="web-xss",
                command="echo '<script>alert(1)</script>'; "
                "printf '\\033[31mred <img src=x onerror=alert(2)>\\033[0m\\n'",
                labels=["base"],
                parameters={"p": "<script>alert(3)</script>"},
            )
        )
        run = api.create_run(FlowRunCreate(flow="web-xss", name=attack))
        browser.get(f"{agent.api_url}/runs/{run.id}")  # open while it runs: the lines arrive through live.js
        eventually(lambda: badge(browser) == "Success", what="the run to finish")
    eventually(lambda: "red <img" in text_of(browser, "#output"), what="the output")
    assert text_of(browser, ".run-title .title-text") == attack
    assert attack in text_of(browser, "#output")
    assert "alert(3)" in text_of(browser, "pre.json")
    red = browser.execute_script("return document.querySelector('#output .a-f1').textContent")
    assert red == "red <img src=x onerror=alert(2)>"
    assert browser.execute_script("return document.querySelectorAll('main script, main img').length") == 0
    browser.get(agent.api_url + "/")
    assert attack in text_of(browser, f'tr[data-run="{run.id}"]')
    browser.get(agent.api_url + "/flows")
    assert no_alert(browser)
    assert browser.execute_script("return document.querySelectorAll('main script, main img').length") == 0


def test_without_the_key_nothing_is_shown(browser: Any, make_api_server: MakeApiServer, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    server = make_api_server(api_keys=("k-web-123",))
    http = Http(server, key="k-web-123")
    http.flow("private-flow")
    http.run("private-flow", name="private-run")
    for path in ("/flows", "/agents", "/"):
        browser.get(server.url + path)
        assert browser.find_element(By.ID, "key")
        assert "private" not in browser.page_source
    screenshot(browser, tmp_path, "login")
    browser.find_element(By.ID, "key").send_keys("wrong")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    eventually(lambda: "not accepted" in text_of(browser, ".alert"), what="the wrong key to be refused")
    browser.find_element(By.ID, "key").send_keys("k-web-123")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    eventually(lambda: "private-run" in text_of(browser, "#runs"), what="the runs after logging in")
    assert "k-web-123" not in browser.current_url
    assert browser.execute_script("return document.cookie") == ""  # HttpOnly: no script can read the key
    browser.find_element(By.CSS_SELECTOR, "form.logout button").click()
    eventually(lambda: browser.find_element(By.ID, "key"), what="the login form after logging out")
    browser.get(server.url + "/")
    assert "private" not in browser.page_source


@pytest.mark.parametrize(("width", "suffix"), [(1280, ""), (375, "-phone")])
def test_pages_are_usable_at_desktop_and_phone_width(
    browser: Any, agent: AgentProcess, tmp_path: Path, width: int, suffix: str
) -> None:
    from selenium.webdriver.common.by import By

    with agent.client() as api:
        api.register_flow(
            FlowSpec(
                name="web-report",
                command=["sh", "-c", "printf '\\033[1;32mok\\033[0m report for %s\\n' \"$DAY\"; echo warn >&2"],
                labels=["base"],
                parameters={"day": "today"},
                run_config={"env": {"DAY": "monday", "SMTP_PASSWORD": "hunter2"}},
                schedules=[
                    ScheduleSpec(
                        name="weekdays", cron="0 7 * * mon-fri", timezone="Europe/Berlin", overlap=Overlap.SKIP
                    ),
                    ScheduleSpec(name="refresh", interval=6 * 3600, anchor=SIX_HOURLY_ANCHOR),
                ],
            )
        )
        api.set_schedule_paused("web-report", "refresh", True)
        run = api.create_run(FlowRunCreate(flow="web-report"))
        eventually(lambda: api.get_run(run.id).state.is_final, what="the report run to finish")
    # A small fleet beside the real agent, so the agents page shows its grouping: two configs, one error.
    for index, (config, error) in enumerate(
        [("4b15", None)] * 3 + [("9c02", "agent.toml:4:9: labels: expected a list")]
    ):
        body = {"name": f"build-{index + 1:02d}", "hostname": f"build-{index + 1:02d}.lan", "labels": ["linux"]}
        body |= {"config_hash": config + "e0" * 30, "config_generation": 7, "config_error": error, "version": "0.1.0"}
        requests.post(agent.api_url + "/api/agents", json=body, timeout=30).raise_for_status()
    browser.set_window_size(width, 900)
    for name, path in (("runs", "/"), ("run", f"/runs/{run.id}"), ("flows", "/flows"), ("agents", "/agents")):
        browser.get(agent.api_url + path)
        eventually(lambda: browser.find_element(By.CSS_SELECTOR, "main h1"), what=f"the {name} page")
        overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{name} page scrolls sideways by {overflow}px at {width}px"
        for link in browser.find_elements(By.CSS_SELECTOR, "header.top nav a"):
            assert link.is_displayed()
        screenshot(browser, tmp_path, name + suffix)
    browser.get(agent.api_url + f"/runs/{run.id}")
    assert "hunter2" not in browser.page_source and "monday" in browser.page_source
    browser.get(agent.api_url + "/agents")
    assert "3 hosts" in text_of(browser, "#fleet")


def test_a_schedule_is_paused_and_resumed_from_the_flows_page(browser: Any, agent: AgentProcess) -> None:
    from selenium.webdriver.common.by import By

    with agent.client() as api:
        nightly = ScheduleSpec(name="nightly", cron="30 2 * * *", timezone="Europe/Berlin")
        api.register_flow(FlowSpec(name="web-nightly", command=["true"], labels=["base"], schedules=[nightly]))
        block = "#schedule-web-nightly-nightly"
        browser.get(agent.api_url + "/flows")
        assert badge(browser, f"{block} .badge") == "active"
        assert len(browser.find_elements(By.CSS_SELECTOR, f"{block} table.next-times tbody tr")) == 5
        browser.find_element(By.CSS_SELECTOR, 'button[data-schedule="web-nightly/nightly"]').click()
        eventually(lambda: badge(browser, f"{block} .badge") == "paused", what="the schedule to show paused")
        assert api.list_schedules("web-nightly")[0].paused
        assert not browser.find_elements(By.CSS_SELECTOR, f"{block} table.next-times")
        browser.find_element(By.CSS_SELECTOR, 'button[data-schedule="web-nightly/nightly"]').click()
        eventually(lambda: badge(browser, f"{block} .badge") == "active", what="the schedule to show active again")
        assert not api.list_schedules("web-nightly")[0].paused
        assert len(browser.find_elements(By.CSS_SELECTOR, f"{block} table.next-times tbody tr")) == 5
