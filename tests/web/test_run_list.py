"""Keyset pages of the runs list, straight on the store: filters no index serves look at a bounded window."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from localagent.api.models import FlowRunCreate, FlowSpec
from localagent.server.services import Services
from localagent.server.settings import ServerSettings
from localagent.server.web.run_list import RunFilter, read_run_page
from tests.pg.support import pg_database, pg_url, requires_postgres

__all__ = ["pg_database", "pg_url"]  # fixtures


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=requires_postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.db'}"
    return str(request.getfixturevalue("pg_url"))


def make_runs(database_url: str, count: int, labelled_every: int) -> Services:
    svc = Services.build(ServerSettings(database_url=database_url))
    svc.flows.register(FlowSpec(name="job", command="true"))
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for index in range(count):
        svc.runs.create(
            FlowRunCreate(
                flow="job",
                name=f"r{index:03d}",
                labels=["rare"] if index % labelled_every == 0 else [],
                scheduled_start=base + timedelta(seconds=index),
            )
        )
    return svc


def names(rows: list) -> list[str]:  # type: ignore[type-arg]
    return [row.name for row in rows]


def test_a_rare_label_is_searched_window_by_window_without_losing_a_run(database_url: str) -> None:
    svc = make_runs(database_url, 60, labelled_every=20)  # r000, r020, r040 carry the label
    where = RunFilter(label="rare")
    found: list[str] = []
    cursor = None
    steps = 0
    while True:
        page = read_run_page(svc.database, where, before=cursor, limit=2, scan_window=7)
        found += names(page.rows)
        steps += 1
        if page.older is None:
            break
        cursor = page.older
    assert found == ["r040", "r020", "r000"]
    assert steps > 3  # the windows (7 runs each) were walked one page at a time
    svc.database.dispose()


def test_walking_back_then_forward_returns_the_same_pages(database_url: str) -> None:
    svc = make_runs(database_url, 25, labelled_every=1)
    where = RunFilter(label="rare")
    first = read_run_page(svc.database, where, limit=10, scan_window=12)
    second = read_run_page(svc.database, where, before=first.older, limit=10, scan_window=12)
    assert names(first.rows) == [f"r{i:03d}" for i in range(24, 14, -1)]
    assert names(second.rows) == [f"r{i:03d}" for i in range(14, 4, -1)]
    back = read_run_page(svc.database, where, after=second.newer, limit=10, scan_window=12)
    assert names(back.rows) == names(first.rows)
    assert back.newer is None
    svc.database.dispose()


def test_final_and_active_state_filters(database_url: str) -> None:
    svc = make_runs(database_url, 12, labelled_every=100)
    assert names(read_run_page(svc.database, RunFilter(state="Scheduled"), limit=5).rows) == [
        f"r{i:03d}" for i in range(11, 6, -1)
    ]
    cancelled = [run.id for run in svc.runs.list_runs(limit=3)]
    for run_id in cancelled:
        svc.runs.cancel(run_id)
    page = read_run_page(svc.database, RunFilter(state="Cancelled"), limit=5, scan_window=4)
    assert names(page.rows) == ["r011", "r010", "r009"]
    svc.database.dispose()
