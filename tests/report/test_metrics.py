"""Delivery metrics over a seeded history with known times, checked against hand-computed values,
through the Python API and through ``rollwise metrics --output json`` on a SQLite store."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rollwise.adapters.stores.memory import MemoryStore
from rollwise.adapters.stores.sql import SqlStore
from rollwise.cli.main import app
from rollwise.core.model import Event, Phase, RolloutRecord, RouteState
from rollwise.core.protocols import Store
from rollwise.report import metrics as metrics_module
from rollwise.report.metrics import BANDS, DORA_BANDS, band, delivery_metrics
from support.reports import canary_spec

DAY = 86400.0
FAILED = {2: 600.0, 5: 1200.0, 8: 2400.0}  # run index -> seconds from first user traffic to rollback
HOLD_ONLY_STAGE = 4  # this run's second stage never saw data
LEAD_RUN = 9
LEAD_S = 7200.0


def seed(store: Store, now: float) -> None:
    """Ten releases over ten days, one a day: checkout on even days, search on odd ones (each under one
    rollout name, re-created every time). Runs 2, 5 and 8 roll back."""
    for i in range(10):
        service = "checkout" if i % 2 == 0 else "search"
        spec = canary_spec().model_copy(update={"name": service, "service": service})
        s = now - 10 * DAY + i * DAY + 3600.0
        commit_time = s - LEAD_S if i == LEAD_RUN else None
        record = RolloutRecord(name=service, spec=spec, created_at=s, updated_at=s, route=RouteState(stable="v1"),
                               commit_time=commit_time)

        def ev(at: float, type_: str, message: str, name: str = service, **data: Any) -> Event:
            return Event(rollout=name, at=at, type=type_, message=message, data=data)

        created = store.create(record, [ev(s, "created", "created")])
        events = [
            ev(s, "phase", "progressing", phase="Progressing"),
            ev(s + 60, "step", "weight 0% -> 10%", kind="setWeight", weight=10.0, previous_weight=0.0),
            ev(s + 90, "decision", "observing", action="continue", stage=1, weight=10.0),
        ]
        if i in FAILED:
            end = s + 60 + FAILED[i]
            events += [ev(end, "decision", "error-rate regressed", action="rollback", stage=1, weight=10.0),
                       ev(end, "phase", "RolledBack: error-rate regressed", phase="RolledBack")]
            phase = Phase.ROLLED_BACK
        else:
            events += [ev(s + 120, "decision", "no regression", action="expand", stage=1, weight=10.0),
                       ev(s + 130, "step", "weight 10% -> 50%", kind="setWeight", weight=50.0, previous_weight=10.0)]
            if i == HOLD_ONLY_STAGE:
                events.append(ev(s + 140, "decision", "no metrics", action="hold", stage=2, weight=50.0))
            else:
                events.append(ev(s + 140, "decision", "no regression", action="expand", stage=2, weight=50.0))
            end = s + 360
            events += [ev(s + 300, "step", "weight 50% -> 100%", kind="setWeight", weight=100.0, previous_weight=50.0),
                       ev(end, "phase", "Succeeded: all steps passed", phase="Succeeded")]
            phase = Phase.SUCCEEDED
        store.save(created.model_copy(update={"phase": phase, "finished_at": end, "updated_at": end}), events)


def check_overall(overall: dict[str, Any]) -> None:
    # hand-computed from the seed: 10 ended, 7 succeeded, 3 rolled back over a 10-day window
    assert overall["releases_ended"] == 10
    assert (overall["succeeded"], overall["rolled_back"], overall["aborted"]) == (7, 3, 0)
    assert overall["deployment_frequency_per_day"] == pytest.approx(7 / 10)
    assert overall["change_failure_rate"] == pytest.approx(3 / 10)
    assert sorted(overall["recovery_time_s"]["values"]) == [600.0, 1200.0, 2400.0]
    assert overall["recovery_time_s"]["median"] == pytest.approx(1200.0)
    assert overall["recovery_time_s"]["mean"] == pytest.approx((600 + 1200 + 2400) / 3)
    assert overall["rollback_frequency_per_day"] == pytest.approx(3 / 10)
    assert overall["rollback_frequency_per_week"] == pytest.approx(3 / 10 * 7)
    assert overall["lead_time_s"]["median"] == pytest.approx(LEAD_S + 360)
    assert overall["release_observability"] == pytest.approx(9 / 10)
    assert overall["dora"] == {"deployment_frequency": "high", "lead_time": "elite",
                               "change_failure_rate": "low", "recovery_time": "elite"}  # 20 min < 1 h


def test_delivery_metrics_match_hand_computed_values() -> None:
    now = 1_800_000_000.0
    store = MemoryStore()
    seed(store, now)
    data = delivery_metrics(store, since_s=10 * DAY, now=now)
    check_overall(data["overall"])
    checkout, search = data["services"]["checkout"], data["services"]["search"]
    assert (checkout["releases_ended"], checkout["failed"]) == (5, 2)
    assert checkout["change_failure_rate"] == pytest.approx(2 / 5)
    assert checkout["recovery_time_s"]["median"] == pytest.approx((600 + 2400) / 2)
    assert checkout["deployment_frequency_per_day"] == pytest.approx(3 / 10)
    assert (search["releases_ended"], search["failed"]) == (5, 1)
    assert search["recovery_time_s"]["values"] == [1200.0]
    # one service, and a shorter window: only runs that ended in the last 3.5 days (runs 7, 8, 9)
    only = delivery_metrics(store, service="search", since_s=10 * DAY, now=now)
    assert list(only["services"]) == ["search"] and only["overall"]["releases_ended"] == 5
    recent = delivery_metrics(store, since_s=3.5 * DAY, now=now)["overall"]
    assert (recent["releases_ended"], recent["rolled_back"]) == (3, 1)
    assert recent["deployment_frequency_per_day"] == pytest.approx(2 / 3.5)


def test_an_undone_release_counts_as_failed_from_its_release_to_the_undo() -> None:
    now = 1_800_000_000.0
    store = MemoryStore()
    spec = canary_spec()
    s = now - DAY
    record = RolloutRecord(name=spec.name, spec=spec, created_at=s, updated_at=s, route=RouteState(stable="v1"))
    created = store.create(record, [Event(rollout=spec.name, at=s, type="created", message="c")])
    store.save(created.model_copy(update={"phase": Phase.ROLLED_BACK}), [
        Event(rollout=spec.name, at=s + 10, type="step", message="w", data={"kind": "setWeight", "weight": 100.0}),
        Event(rollout=spec.name, at=s + 100, type="phase", message="Succeeded", data={"phase": "Succeeded"}),
        Event(rollout=spec.name, at=s + 400, type="command", message="undo", data={"command": "undo"}),
    ])
    overall = delivery_metrics(store, now=now, since_s=2 * DAY)["overall"]
    assert (overall["succeeded"], overall["rolled_back"]) == (0, 1)
    assert overall["recovery_time_s"]["values"] == [300.0]


@pytest.mark.timeout(120)
def test_metrics_cli_json_over_a_sqlite_history(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    store = SqlStore(url)
    try:
        seed(store, time.time())
    finally:
        store.close()
    result = CliRunner().invoke(app, ["metrics", "--output", "json", "--since", "10d", "--store", url])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    check_overall(data["overall"])
    assert sorted(data["services"]) == ["checkout", "search"]
    text = CliRunner().invoke(app, ["metrics", "--since", "10d", "--store", url, "--service", "search"])
    assert text.exit_code == 0 and "search" in text.stdout
    bad = CliRunner().invoke(app, ["metrics", "--since", "ten days", "--store", url])
    assert bad.exit_code == 2 and "--since" in bad.output


def test_dora_bands_come_from_one_table_with_the_reports_edges() -> None:
    # each edge lands where the DORA 2023 report puts it: strict or inclusive as the report words it
    assert [band("deployment_frequency", v) for v in (2.0, 1.0, 1 / 7, 1 / 30, 0.01)] == \
        ["elite", "high", "high", "medium", "low"]
    assert [band("change_failure_rate", v) for v in (0.05, 0.0501, 0.10, 0.15, 0.16)] == \
        ["elite", "high", "high", "medium", "low"]
    assert [band("recovery_time", v) for v in (3599.0, 3600.0, DAY, 7 * DAY)] == ["elite", "high", "medium", "low"]
    assert [band("lead_time", v) for v in (0.0, DAY, 7 * DAY, 30 * DAY)] == ["elite", "high", "medium", "low"]
    assert band("lead_time", None) is None
    assert set(BANDS) == set(DORA_BANDS) and "DORA_BANDS" in (metrics_module.__doc__ or "")


def test_trends_bucket_the_window_by_day_and_agree_with_the_totals() -> None:
    now = 1_800_000_000.0
    store = MemoryStore()
    seed(store, now)
    data = delivery_metrics(store, since_s=10 * DAY, now=now)
    assert data["bucket_s"] == DAY  # ten days of history: one point a day
    points = data["overall"]["trend"]
    assert len(points) == 10 and points[-1]["end"] == now and points[0]["start"] == now - 10 * DAY
    assert [p["releases_ended"] for p in points] == [1] * 10  # one release a day
    assert [p["failed"] for p in points] == [1 if i in FAILED else 0 for i in range(10)]
    assert sum(p["succeeded"] for p in points) == data["overall"]["succeeded"]
    assert points[2]["recovery_time_median_s"] == FAILED[2] and points[2]["change_failure_rate"] == 1.0
    assert points[LEAD_RUN]["lead_time_median_s"] == pytest.approx(LEAD_S + 360)
    assert points[0]["deployment_frequency_per_day"] == pytest.approx(1.0)
    checkout = data["services"]["checkout"]["trend"]
    assert [p["releases_ended"] for p in checkout] == [1, 0] * 5
    weekly = delivery_metrics(store, since_s=10 * DAY, now=now, bucket_s=7 * DAY)["overall"]["trend"]
    assert [p["releases_ended"] for p in weekly] == [3, 7] and weekly[0]["start"] == now - 14 * DAY
