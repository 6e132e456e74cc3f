"""AgentMetrics: what /metrics shows after the events the agent reports."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from localagent.agent.metrics import AgentMetrics
from localagent.api.models import StateName


def samples(metrics: AgentMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_runs_started_finished_and_running() -> None:
    metrics = AgentMetrics()
    metrics.run_started()
    metrics.run_started()
    metrics.run_finished(StateName.SUCCESS)
    metrics.run_finished(StateName.FAILED)
    metrics.run_finished(StateName.FAILED)
    found = samples(metrics)
    assert found[("localagent_runs_started_total", ())] == 2
    assert found[("localagent_runs_finished_total", (("state", "Success"),))] == 1
    assert found[("localagent_runs_finished_total", (("state", "Failed"),))] == 2
    assert found[("localagent_runs_finished_total", (("state", "Cancelled"),))] == 0


def test_running_gauge_follows_the_run_table_when_tracked() -> None:
    metrics = AgentMetrics()
    table = {"a": 1, "b": 2, "c": 3}
    metrics.track_running(lambda: len(table))
    metrics.run_finished(StateName.FAILED)  # a run that never started must not push the gauge below zero
    assert samples(metrics)[("localagent_runs_running", ())] == 3
    del table["a"]
    assert samples(metrics)[("localagent_runs_running", ())] == 2


def test_polls_reloads_and_log_lines() -> None:
    metrics = AgentMetrics()
    metrics.observe_poll(0.02, ok=True)
    metrics.observe_poll(3.0, ok=False)
    metrics.observe_reload(ok=True)
    metrics.observe_reload(ok=False)
    metrics.observe_reload(ok=False)
    metrics.observe_log_lines(shipped=10, spooled=4)
    metrics.observe_log_lines(shipped=1, dropped=7)
    found = samples(metrics)
    assert found[("localagent_poll_seconds_count", ())] == 2
    assert found[("localagent_poll_seconds_bucket", (("le", "0.025"),))] == 1
    assert found[("localagent_polls_total", (("result", "ok"),))] == 1
    assert found[("localagent_polls_total", (("result", "error"),))] == 1
    assert found[("localagent_reloads_total", ())] == 1
    assert found[("localagent_reload_errors_total", ())] == 2
    assert found[("localagent_log_lines_total", (("outcome", "shipped"),))] == 11
    assert found[("localagent_log_lines_total", (("outcome", "spooled"),))] == 4
    assert found[("localagent_log_lines_total", (("outcome", "dropped"),))] == 7


def test_each_instance_has_its_own_registry() -> None:
    first, second = AgentMetrics(), AgentMetrics()
    first.run_started()
    assert samples(second)[("localagent_runs_started_total", ())] == 0
