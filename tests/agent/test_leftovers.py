"""LeftoverSpools against the real API server: output an earlier agent left is delivered once, then removed."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from localagent.agent.metrics import AgentMetrics
from localagent.agent.run.leftovers import LEFTOVER_DIR, LeftoverSpools
from localagent.agent.run.shipper import LogShipper
from localagent.agent.run.spool import STDERR, STDOUT, RunSpool, SpoolMeta
from localagent.api.client import ApiClient
from localagent.api.models import ClaimedRun, FlowSpec, LogLine
from localagent.server.runner import ServerThread
from tests.conftest import MakeApiServer
from tests.support.runs import all_logs, claim_one

AGENT_KEY = "agent-key"


@pytest.fixture
def server(make_api_server: MakeApiServer) -> ServerThread:
    return make_api_server(api_keys=(AGENT_KEY,))


@pytest.fixture
def agent_client(server: ServerThread) -> Iterator[ApiClient]:
    """The agent's own client: its key, not a run's token."""
    with ApiClient(server.url, key=AGENT_KEY, timeout=2.0, retries=0) as client:
        yield client


@pytest.fixture
def claimed(agent_client: ApiClient) -> ClaimedRun:
    return claim_one(agent_client, FlowSpec(name="chatty", command=["true"]))


def leave_spool(spool_root: Path, meta: SpoolMeta, texts: list[str], *, start: int = 0) -> RunSpool:
    """A spool as an agent that stopped leaves it: ``texts`` written by a real RunSpool, then let go."""
    spool = RunSpool.create(spool_root / meta.run_id, meta)
    for index, text in enumerate(texts, start):
        spool.append(STDERR if index % 5 == 4 else STDOUT, time.time(), f"{text}\n".encode())
    return spool


def texts_of(lines: list[LogLine]) -> list[str]:
    return [line.text for line in lines]


def test_a_leftover_is_delivered_in_order_with_its_seqs_then_removed(
    tmp_path: Path, server: ServerThread, agent_client: ApiClient, claimed: ClaimedRun, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "state" / "spool"
    run_id = claimed.run.id
    meta = SpoolMeta(run_id, server.url, claimed.next_log_seq, f"chatty/{claimed.run.name}")
    texts = [f"line {i}" for i in range(12_000)]  # more than one batch
    leave_spool(root, meta, texts).release()
    metrics = AgentMetrics()
    leftovers = LeftoverSpools(root, metrics=metrics)
    caplog.set_level(logging.INFO, logger="localagent")
    assert leftovers.collect() == 1
    assert not (root / run_id).exists()  # set aside before any claim could reuse the directory
    (moved,) = (root / LEFTOVER_DIR).iterdir()
    assert moved.name.startswith(f"{run_id}-")
    leftovers.start(server.url, agent_client)
    assert leftovers.join(30)
    lines = all_logs(agent_client, run_id)
    assert texts_of(lines) == texts
    assert [line.seq for line in lines] == list(range(meta.first_seq, meta.first_seq + len(texts)))
    assert {line.stream for line in lines[4::5]} == {"stderr"}
    assert list((root / LEFTOVER_DIR).iterdir()) == []
    assert f"run {run_id} (chatty/{claimed.run.name}): delivered 12000 output lines left by an earlier agent" in (
        caplog.text
    )
    rendered = metrics.render().decode()
    assert re.search(r'^localagent_log_lines_total\{outcome="shipped"\} 12000\.0$', rendered, re.M)


def test_lines_the_api_already_has_are_stored_once(
    tmp_path: Path, server: ServerThread, agent_client: ApiClient, claimed: ClaimedRun
) -> None:
    root = tmp_path / "state" / "spool"
    run_id = claimed.run.id
    meta = SpoolMeta(run_id, server.url, claimed.next_log_seq, "chatty/run")
    spool = leave_spool(root, meta, [f"line {i}" for i in range(50)])
    # The first agent delivers half of the output, then stops before the rest gets out.
    shipper = LogShipper(spool, agent_client, run_id, first_seq=meta.first_seq, flush_interval=0.01)
    shipper.start()
    deadline = time.monotonic() + 30
    while len(all_logs(agent_client, run_id)) < 50 and time.monotonic() < deadline:
        time.sleep(0.02)
    shipper.give_up()
    assert shipper.join(10)
    for i in range(50, 100):
        spool.append(STDOUT, time.time(), f"line {i}\n".encode())
    spool.release()
    leftovers = LeftoverSpools(root)
    assert leftovers.collect() == 1
    leftovers.start(server.url, agent_client)
    assert leftovers.join(30)
    lines = all_logs(agent_client, run_id)
    assert texts_of(lines) == [f"line {i}" for i in range(100)]
    assert [line.seq for line in lines] == list(range(meta.first_seq, meta.first_seq + 100))
    assert not (root / LEFTOVER_DIR / run_id).exists() and list((root / LEFTOVER_DIR).iterdir()) == []


def test_output_of_a_run_the_api_no_longer_knows_is_removed(
    tmp_path: Path, server: ServerThread, agent_client: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "state" / "spool"
    leave_spool(root, SpoolMeta("gone-run", server.url, 0, "chatty/gone"), ["lost cause"]).release()
    leftovers = LeftoverSpools(root)
    caplog.set_level(logging.INFO, logger="localagent")
    assert leftovers.collect() == 1
    leftovers.start(server.url, agent_client)
    assert leftovers.join(30)
    assert list((root / LEFTOVER_DIR).iterdir()) == []
    assert "run gone-run (chatty/gone): the API no longer knows this run" in caplog.text


def test_output_refused_for_the_key_is_kept_for_the_next_start(
    tmp_path: Path, server: ServerThread, claimed: ClaimedRun
) -> None:
    root = tmp_path / "state" / "spool"
    leave_spool(root, SpoolMeta(claimed.run.id, server.url, 0, "chatty/x"), ["keep me"]).release()
    leftovers = LeftoverSpools(root)
    assert leftovers.collect() == 1
    with ApiClient(server.url, key="rotated-away", retries=0) as stale:  # 401: not a reason to drop output
        leftovers.start(server.url, stale)
        assert leftovers.join(30)
    assert leftovers.collect() == 1


def test_output_for_another_api_and_spools_without_meta_are_kept(
    tmp_path: Path,
    server: ServerThread,
    agent_client: ApiClient,
    claimed: ClaimedRun,
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = tmp_path / "state" / "spool"
    other = "http://other-api.example:4200"
    leave_spool(root, SpoolMeta(claimed.run.id, other, 0, "chatty/elsewhere"), ["for the other API"]).release()
    older = RunSpool.create(root / "old-run")  # an older agent, or logs.send_to_api off: no meta.json
    older.append(STDOUT, time.time(), b"no meta\n")
    older.release()
    leftovers = LeftoverSpools(root)
    caplog.set_level(logging.INFO, logger="localagent")
    assert leftovers.collect() == 1
    assert (root / "old-run" / RunSpool.FILE_NAME).is_file()  # left where it is
    assert "1 spool(s) in" in caplog.text and "have no meta.json" in caplog.text and "old-run" in caplog.text
    leftovers.start(server.url, agent_client)
    assert leftovers.join(30)
    (kept,) = (root / LEFTOVER_DIR).iterdir()
    assert SpoolMeta.read(kept).api == other
    assert all_logs(agent_client, claimed.run.id) == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and other in r.getMessage()]
    assert len(warnings) == 1 and "not the one in force" in warnings[0]
    assert LeftoverSpools(root).collect() == 1  # still there for an agent of that API


def test_with_the_api_down_the_leftover_is_kept_after_giving_up(
    tmp_path: Path, server: ServerThread, claimed: ClaimedRun, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "state" / "spool"
    meta = SpoolMeta(claimed.run.id, server.url, claimed.next_log_seq, "chatty/down")
    leave_spool(root, meta, [f"line {i}" for i in range(10)]).release()
    server.stop()
    leftovers = LeftoverSpools(root, initial_backoff=0.05)
    caplog.set_level(logging.INFO, logger="localagent")
    assert leftovers.collect() == 1
    with ApiClient(server.url, key=AGENT_KEY, timeout=0.5, retries=0) as client:
        leftovers.start(server.url, client)
        deadline = time.monotonic() + 30
        while "the API is unreachable" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "the API is unreachable" in caplog.text  # it retries meanwhile
        assert leftovers.stop(10)
    (kept,) = (root / LEFTOVER_DIR).iterdir()
    assert SpoolMeta.read(kept) == meta
    assert "it is kept in" in caplog.text and "for the next start" in caplog.text
    assert LeftoverSpools(root).collect() == 1  # the next start finds it again
