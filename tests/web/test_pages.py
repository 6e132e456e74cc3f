"""The web view over HTTP (no browser): what each page shows, escaping, paging, windows and downloads."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import requests

from localagent.server.runner import ServerThread
from tests.conftest import MakeApiServer
from tests.server.helpers import Http


def page(server: ServerThread, path: str, **kwargs: object) -> requests.Response:
    return requests.get(server.url + path, timeout=30, **kwargs)  # type: ignore[arg-type]


def run_names(html: str) -> list[str]:
    return re.findall(r'<td class="name"><a href="/runs/[0-9a-f]+">([^<]*)</a>', html)


def test_every_page_renders_with_a_strict_content_security_policy(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow()
    run = http.run()
    for path in ("/", "/flows", "/agents", f"/runs/{run['id']}"):
        reply = page(api_server, path)
        assert reply.status_code == 200, (path, reply.text)
        csp = reply.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "<script>" not in reply.text  # no inline script at all: only <script src=...>
    assert page(api_server, "/static/live.js").status_code == 200
    assert page(api_server, "/static/app.css").headers["x-content-type-options"] == "nosniff"


def test_runs_list_shows_runs_newest_first_and_pages_by_keyset(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow()
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for index in range(120):
        http.run(name=f"run-{index:03d}", scheduled_start=(base + timedelta(seconds=index)).isoformat())
    first = page(api_server, "/").text
    names = run_names(first)
    assert names == [f"run-{i:03d}" for i in range(119, 69, -1)]
    seen = list(names)
    older = re.search(r'href="/\?before=([^"]+)">Older', first)
    while older:
        html = page(api_server, "/?before=" + older.group(1).replace("&amp;", "&")).text
        seen += run_names(html)
        older = re.search(r'href="/\?before=([^"]+)">Older', html)
        last_html = html
    assert seen == [f"run-{i:03d}" for i in range(119, -1, -1)]
    newer = re.search(r'href="/\?after=([^"]+)">', last_html)
    assert newer is not None
    back = run_names(page(api_server, "/?after=" + newer.group(1)).text)
    assert back == [f"run-{i:03d}" for i in range(69, 19, -1)]


def test_runs_list_filters_by_state_flow_label_and_agent(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow("alpha", labels=["gpu"])
    http.flow("beta")
    http.run("alpha", name="a-run")
    http.run("beta", name="b-run", labels=["50%_off"])
    agent = http.agent("worker-7")
    claimed = http.claim(agent["id"], labels=["gpu"])["runs"]
    assert [c["run"]["name"] for c in claimed] == ["a-run"]
    assert run_names(page(api_server, "/?flow=beta").text) == ["b-run"]
    assert run_names(page(api_server, "/?label=gpu").text) == ["a-run"]
    assert run_names(page(api_server, "/?label=50%25_off").text) == ["b-run"]
    assert run_names(page(api_server, "/?label=50").text) == []  # a label matches whole, not a part of one
    assert run_names(page(api_server, "/?state=Submitted").text) == ["a-run"]
    assert run_names(page(api_server, "/?agent=worker-7").text) == ["a-run"]
    assert "No runs match these filters." in page(api_server, "/?state=Crashed").text
    assert page(api_server, "/?before=nonsense").status_code == 400


def test_everything_a_run_controls_is_escaped(api_server: ServerThread) -> None:
    http = Http(api_server)
    attack = "<script>alert(1)</script>"
    http.flow(parameters={"p": attack})
    run = http.run(name=attack, labels=[attack])
    (claimed,) = http.claim(http.agent()["id"], slots=1, run_unlabeled=True, labels=[attack])["runs"]
    lines = [{"seq": 0, "time": "2026-01-01T00:00:00Z", "stream": "stdout", "text": attack}]
    token = {"Authorization": f"Bearer {claimed['token']}"}
    requests.post(f"{api_server.url}/api/flow_runs/{run['id']}/logs", json={"lines": lines}, headers=token, timeout=30)
    for path in ("/", f"/runs/{run['id']}", "/flows"):
        html = page(api_server, path).text
        assert attack not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_run_page_masks_secret_env_and_renders_ansi_as_classes(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow(run_config={"env": {"API_TOKEN": "hunter2", "DB_PASSWORD": "pw", "REGION": "eu-west"}})
    run = http.run()
    (claimed,) = http.claim(http.agent()["id"], run_unlabeled=True)["runs"]
    lines = [
        {"seq": 0, "time": "2026-01-01T00:00:00Z", "stream": "stdout", "text": "\x1b[1;31mred alert\x1b[0m plain"},
        {"seq": 1, "time": "2026-01-01T00:00:00Z", "stream": "stderr", "text": "oops\x1b]0;title\x07"},
    ]
    token = {"Authorization": f"Bearer {claimed['token']}"}
    requests.post(f"{api_server.url}/api/flow_runs/{run['id']}/logs", json={"lines": lines}, headers=token, timeout=30)
    html = page(api_server, f"/runs/{run['id']}").text
    assert "hunter2" not in html and ">pw<" not in html and "eu-west" in html
    assert '<span class="a-b a-f1">red alert</span> plain' in html
    assert 'class="ln stderr"' in html and "title" not in html.split('id="output"')[1]
    assert "\x1b" not in html


def test_output_opens_with_first_and_last_lines_and_jumps_searches_and_downloads(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow()
    run = http.run()
    (claimed,) = http.claim(http.agent()["id"], run_unlabeled=True)["runs"]
    token = {"Authorization": f"Bearer {claimed['token']}"}
    total = 5000
    lines = [{"seq": i, "time": "2026-01-01T00:00:00Z", "text": f"line {i + 1}"} for i in range(total)]
    reply = requests.post(
        f"{api_server.url}/api/flow_runs/{run['id']}/logs", json={"lines": lines}, headers=token, timeout=60
    )
    assert reply.status_code == 200, reply.text
    html = page(api_server, f"/runs/{run['id']}").text
    shown = re.findall(r'<span class="tx">line (\d+)</span>', html)
    assert shown[:3] == ["1", "2", "3"] and shown[-1] == str(total)
    assert shown[99:101] == ["100", str(total - 199)]
    assert len(shown) == 300
    assert "4,700 lines not shown" in html
    jumped = re.findall(r'<span class="tx">line (\d+)</span>', page(api_server, f"/runs/{run['id']}?line=2500").text)
    assert jumped[0] == "2500" and len(jumped) == 300
    found = re.findall(
        r'<span class="tx">line (\d+)</span>', page(api_server, f"/runs/{run['id']}", params={"q": "line 4999"}).text
    )
    assert found == ["4999"]
    raw = page(api_server, f"/runs/{run['id']}/output.txt")
    assert raw.headers["content-disposition"].startswith("attachment;")
    assert raw.text.splitlines() == [f"line {i + 1}" for i in range(total)]


def test_fleet_groups_agents_by_config_hash_and_shows_errors(api_server: ServerThread) -> None:
    http = Http(api_server)
    for index in range(3):
        http.agent(f"host-{index}", hostname=f"host-{index}", config_hash="4b15" + "0" * 60, config_generation=2)
    http.agent("host-9", hostname="host-9", config_hash="9c02" + "0" * 60, config_error="agent.toml: <b>bad</b>")
    html = page(api_server, "/agents").text
    assert html.index("4b1500000000") < html.index("9c0200000000")  # the largest group first
    assert "3 hosts" in html and "1 host " in html
    assert "1 with an error" in html and "agent.toml: &lt;b&gt;bad&lt;/b&gt;" in html


def test_with_api_keys_nothing_is_shown_without_the_key(make_api_server: MakeApiServer) -> None:
    server = make_api_server(api_keys=("s3cret-key",))
    Http(server, key="s3cret-key").flow()
    for path in ("/", "/flows", "/agents", "/runs/x", "/runs/x/output.txt"):
        reply = page(server, path, allow_redirects=False)
        assert reply.status_code == 303 and reply.headers["location"].startswith("/login?next=")
    session = requests.Session()
    origin = {"Origin": server.url}
    wrong = session.post(server.url + "/login", data={"key": "nope"}, headers=origin, timeout=30)
    assert wrong.status_code == 401 and "not accepted" in wrong.text
    login = session.post(
        server.url + "/login", data={"key": "s3cret-key", "next": "/flows"}, headers=origin, allow_redirects=False
    )
    assert login.status_code == 303 and login.headers["location"] == "/flows"
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "s3cret-key" not in login.headers["location"]
    assert "hello" in session.get(server.url + "/flows", timeout=30).text
    # The cookie reads the API (the pages' scripts follow output this way) but never writes through it.
    assert session.get(server.url + "/api/flows", timeout=30).status_code == 200
    assert session.post(server.url + "/api/flow_runs", json={"flow": "hello"}, timeout=30).status_code == 401
    logout = session.post(server.url + "/logout", headers=origin, allow_redirects=False, timeout=30)
    assert logout.status_code == 303
    assert session.get(server.url + "/flows", allow_redirects=False, timeout=30).status_code == 303


def test_actions_refuse_cross_site_requests_and_rebound_host_names(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow()
    run = http.run()
    url = f"{api_server.url}/runs/{run['id']}/cancel"
    assert requests.post(url, timeout=30).status_code == 403
    assert requests.post(url, headers={"Origin": "https://evil.example"}, timeout=30).status_code == 403
    assert http.ok("get", f"/api/flow_runs/{run['id']}")["state"] == "Scheduled"
    done = requests.post(url, headers={"Origin": api_server.url}, allow_redirects=False, timeout=30)
    assert done.status_code == 303
    assert http.ok("get", f"/api/flow_runs/{run['id']}")["state"] == "Cancelled"
    # A server without keys answers its pages only on loopback names (DNS rebinding).
    assert page(api_server, "/", headers={"Host": "evil.example"}).status_code == 403


def test_run_now_with_parameters_and_run_again(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow(parameters={"who": "world", "n": 1})
    origin = {"Origin": api_server.url}
    reply = requests.post(
        f"{api_server.url}/flows/hello/run",
        data={"parameters": '{"who": "web"}', "labels": "x, y", "name": "from-web"},
        headers=origin,
        allow_redirects=False,
        timeout=30,
    )
    assert reply.status_code == 303
    run_id = reply.headers["location"].rsplit("/", 1)[1]
    run = http.ok("get", f"/api/flow_runs/{run_id}")
    assert run["name"] == "from-web" and run["parameters"] == {"who": "web", "n": 1} and run["labels"] == ["x", "y"]
    bad = requests.post(f"{api_server.url}/flows/hello/run", data={"parameters": "{oops"}, headers=origin, timeout=30)
    assert bad.status_code == 422 and "parameters: not valid JSON" in bad.text
    again = requests.post(f"{api_server.url}/runs/{run_id}/rerun", headers=origin, allow_redirects=False, timeout=30)
    assert again.status_code == 303
    copy = http.ok("get", "/api/flow_runs/" + again.headers["location"].rsplit("/", 1)[1])
    assert copy["id"] != run_id and copy["parameters"] == run["parameters"] and copy["labels"] == run["labels"]
    missing = requests.post(f"{api_server.url}/flows/nope/run", headers=origin, timeout=30)
    assert missing.status_code == 404 and "flow &#39;nope&#39; not found" in missing.text


def test_a_very_long_line_is_cut_on_the_page_but_whole_in_the_download(api_server: ServerThread) -> None:
    http = Http(api_server)
    http.flow()
    run = http.run()
    (claimed,) = http.claim(http.agent()["id"], run_unlabeled=True)["runs"]
    long_line = "x" * 10_000
    lines = [{"seq": 0, "time": "2026-01-01T00:00:00Z", "text": long_line}]
    token = {"Authorization": f"Bearer {claimed['token']}"}
    requests.post(f"{api_server.url}/api/flow_runs/{run['id']}/logs", json={"lines": lines}, headers=token, timeout=30)
    html = page(api_server, f"/runs/{run['id']}").text
    assert "x" * 4000 in html and "x" * 4001 not in html
    assert "6,000 more characters (see Raw)" in html
    assert page(api_server, f"/runs/{run['id']}/output.txt").text == long_line + "\n"
    assert 'id="output"' not in page(api_server, f"/runs/{run['id']}?live=1").text  # the refresh skips output
