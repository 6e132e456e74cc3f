"""A fleet on three simulated hosts: network namespaces joined to this host by veth pairs, two
``localagent server`` processes on this host's side (one PostgreSQL database), agents inside the
namespaces as real ``localagent run`` processes.

Every flow appends ``RUN_ID PID NETNS`` to one ledger file (the namespaces share the file system), so a run
executed twice shows as two lines whatever the API recorded. Marker ``netns``: run with ``pytest -m netns``
as root (``.ci/run`` does); skipped where namespaces cannot be made or PostgreSQL is not configured.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from localagent.api.client import ApiClient
from localagent.api.models import FlowRun, FlowSpec, StateName
from tests.fleet.netns import Host, Network, netns_problem
from tests.fleet.processes import LOCALAGENT, Fleet, Server, all_runs, executions, mark_command, poll_until
from tests.pg.support import pg_database, pg_url, requires_postgres

__all__ = ["pg_database", "pg_url"]

# The bounds below are liveness limits, not speed checks: on a quiet 2-core machine the suite takes about
# 3 minutes, but a machine shared with other heavy work can be ten times slower.
pytestmark = [pytest.mark.netns, requires_postgres, pytest.mark.timeout(900)]

AGENTS_PER_HOST = 2
HEALTH_PORT = 9180


@pytest.fixture
def net() -> Iterator[Network]:
    problem = netns_problem()
    if problem:
        pytest.skip(problem)
    with Network(hosts=3) as network:
        yield network


@pytest.fixture
def fleet(net: Network, pg_url: str, tmp_path: Path) -> Iterator[Fleet]:
    made = Fleet(net, tmp_path, pg_url, key=secrets.token_hex(16))
    try:
        yield made
    finally:
        made.close()


def start_servers(fleet: Fleet, agent_timeout: str = "60s") -> tuple[Server, Server]:
    """Server A on host 0's host-side address, B on host 1's, one database."""
    hosts = fleet.net.hosts
    a = fleet.start_server("a", hosts[0], "--agent-timeout", agent_timeout)
    b = fleet.start_server("b", hosts[1], "--agent-timeout", agent_timeout)
    return a, b


def start_agents(
    fleet: Fleet,
    urls_for: Callable[[Host, int], list[str]],
    *,
    slots: int = 4,
    poll_interval: str = "2s",
    extra_for: Callable[[Host, int], dict[str, dict[str, Any]]] | None = None,
) -> None:
    """``AGENTS_PER_HOST`` agents in every namespace, named ``h<host>-a<n>``, labelled ``host-<host>``."""
    for host in fleet.net.hosts:
        for n in range(AGENTS_PER_HOST):
            fleet.start_agent(
                host,
                f"h{host.index}-a{n}",
                urls_for(host, n),
                labels=[host.label],
                slots=slots,
                poll_interval=poll_interval,
                extra=extra_for(host, n) if extra_for else None,
            )
    with api_of(fleet.servers[0], fleet.key) as api:
        names = {agent.name for agent in fleet.agents}

        def all_registered() -> bool:
            for agent in fleet.agents:
                assert agent.running(), f"agent {agent.name} exited:\n{agent.log}"
            online = {a.name for a in api.list_agents() if not a.lost and a.stopped is None}
            return names <= online

        poll_until(all_registered, timeout=180, what="every agent to register")


def api_of(server: Server, key: str) -> ApiClient:
    return ApiClient(server.url, key=key, timeout=30)


def wait_all_final(api: ApiClient, count: int, timeout: float) -> list[FlowRun]:
    def final() -> list[FlowRun] | None:
        runs = all_runs(api)
        return runs if len(runs) == count and all(run.state.is_final for run in runs) else None

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done := final():
            return done
        time.sleep(1.0)
    states = sorted(str(run.state.value) for run in all_runs(api))
    raise AssertionError(f"runs not final after {timeout:g}s: {states}")


def bulk_create(server: Server, key: str, flow: str, count: int) -> list[str]:
    """``localagent flow run FLOW --count N``: the CLI, through the bulk API, prints one id a line."""
    done = subprocess.run(
        [LOCALAGENT, "flow", "run", flow, "--count", str(count), "--api", server.url, "--key", key],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    ids = done.stdout.split()
    assert len(ids) == count
    return ids


def assert_once_each(ledger: Path, runs: list[FlowRun]) -> dict[str, set[str]]:
    """Every run ran exactly once and ended Success; returns the namespace each ran in."""
    counts, hosts = executions(ledger)
    twice = {run_id: n for run_id, n in counts.items() if n > 1}
    assert not twice, f"runs executed more than once: {twice}"
    assert set(counts) == {run.id for run in runs}, "a run never executed (or the ledger names an unknown run)"
    not_success = [(run.name, run.state.value, run.state_message) for run in runs if run.state != StateName.SUCCESS]
    assert not not_success, f"runs not Success: {not_success[:20]}"
    return hosts


def test_a_thousand_runs_on_three_hosts_each_run_exactly_once(fleet: Fleet, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    a, b = start_servers(fleet)
    start_agents(fleet, lambda host, n: [(a, b)[n % 2].url])  # half the agents long-poll on B
    with api_of(a, fleet.key) as api:
        api.register_flow(FlowSpec(name="mark", command=mark_command(ledger)))
        ids = bulk_create(a, fleet.key, "mark", 1000)
        runs = wait_all_final(api, 1000, timeout=600)
    assert {run.id for run in runs} == set(ids)
    hosts = assert_once_each(ledger, runs)
    by_name = {agent.name: agent.host.netns for agent in fleet.agents}
    wrong = [run.name for run in runs if hosts[run.id] != {by_name[run.agent_name or ""]}]
    assert not wrong, f"runs executed in another namespace than their agent's: {wrong[:10]}"
    assert {ns for ran_in in hosts.values() for ns in ran_in} == {host.netns for host in fleet.net.hosts}


def test_a_label_bound_to_one_host_only_runs_there(fleet: Fleet, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    a, b = start_servers(fleet)
    start_agents(fleet, lambda host, n: [(a, b)[n % 2].url])
    pinned = fleet.net.hosts[2]
    with api_of(b, fleet.key) as api:
        api.register_flow(FlowSpec(name="pinned", command=mark_command(ledger), labels=[pinned.label]))
        api.register_flow(FlowSpec(name="anywhere", command=mark_command(ledger)))
        pinned_ids = set(bulk_create(b, fleet.key, "pinned", 60))
        bulk_create(b, fleet.key, "anywhere", 60)
        runs = wait_all_final(api, 120, timeout=300)
    hosts = assert_once_each(ledger, runs)
    elsewhere = {
        run_id: ran_in for run_id, ran_in in hosts.items() if run_id in pinned_ids and ran_in != {pinned.netns}
    }
    assert not elsewhere, f"runs labelled {pinned.label} ran outside {pinned.netns}: {elsewhere}"
    pinned_agents = {run.agent_name for run in runs if run.id in pinned_ids}
    assert pinned_agents <= {f"h{pinned.index}-a{n}" for n in range(AGENTS_PER_HOST)}


def failovers(fleet: Fleet) -> float:
    """``localagent_api_failovers_total{direction="failover"}`` summed over every agent's /metrics (served
    inside its namespace): switches away from a URL that failed."""
    total = 0.0
    for agent in fleet.agents:
        port = HEALTH_PORT + int(agent.name.rsplit("-a", 1)[1])
        text = requests.get(f"http://{agent.host.ns_ip}:{port}/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith('localagent_api_failovers_total{direction="failover"}'):
                total += float(line.split()[-1])
    return total


def test_a_server_killed_mid_batch_loses_nothing_and_runs_nothing_twice(fleet: Fleet, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    a, b = start_servers(fleet)
    # every agent knows both servers; half of them prefer A, half B
    start_agents(
        fleet,
        lambda host, n: [a.url, b.url] if n % 2 == 0 else [b.url, a.url],
        extra_for=lambda host, n: {"health": {"address": f"{host.ns_ip}:{HEALTH_PORT + n}"}},
    )
    with api_of(b, fleet.key) as api:
        api.register_flow(FlowSpec(name="mark", command=mark_command(ledger, sleep=1.0)))
        bulk_create(b, fleet.key, "mark", 300)
        poll_until(lambda: sum(executions(ledger)[0].values()) >= 60, timeout=120, what="a fifth of the batch to run")
        a.kill()  # SIGKILL: no goodbye to anyone
        assert sum(executions(ledger)[0].values()) < 300, "the batch ended before the kill: nothing was tested"
        time.sleep(5.0)
        a.restart()
        runs = wait_all_final(api, 300, timeout=300)
    assert_once_each(ledger, runs)
    assert failovers(fleet) > 0, "no agent counted a failover (localagent_api_failovers_total)"


def test_a_host_cut_off_longer_than_the_agent_timeout_runs_nothing_twice(fleet: Fleet, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    a, b = start_servers(fleet, agent_timeout="5s")
    start_agents(fleet, lambda host, n: [(a, b)[n % 2].url], slots=3, poll_interval="1s")
    cut = fleet.net.hosts[2]  # neither server listens on its veth: only its agents lose the API
    total = 3 * AGENTS_PER_HOST * 3
    with api_of(a, fleet.key) as api:
        # each run sleeps far longer than the partition and could be retried: a retry while the original
        # still runs would be a second execution
        command = mark_command(ledger, sleep=25)
        api.register_flow(FlowSpec(name="slow", command=command, retries=2, retry_delay=0))
        bulk_create(a, fleet.key, "slow", total)
        poll_until(lambda: sum(executions(ledger)[0].values()) == total, timeout=180, what="every run to start")
        _, hosts = executions(ledger)
        on_cut = {run_id for run_id, ran_in in hosts.items() if ran_in == {cut.netns}}
        assert on_cut, f"no run started on {cut.netns}: the partition would prove nothing"
        fleet.net.set_link(cut, up=False)
        try:
            poll_until(
                lambda: all(api.get_run(run_id).state.value == "Unknown" for run_id in on_cut),
                timeout=30,
                what=f"the runs on {cut.netns} to become Unknown",
            )
            time.sleep(3.0)  # longer than the agent timeout now, and still cut off
        finally:
            fleet.net.set_link(cut, up=True)
        runs = wait_all_final(api, total, timeout=300)
        histories = {run.id: [record.state.value for record in api.get_run(run.id).history] for run in runs}
    assert_once_each(ledger, runs)
    wrong = {run_id: states for run_id, states in histories.items() if {"Crashed", "Failed"} & set(states)}
    assert not wrong, f"runs that succeeded were recorded Crashed or Failed on the way: {wrong}"
    assert all("Unknown" in histories[run_id] for run_id in on_cut)
