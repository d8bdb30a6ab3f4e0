"""The RCA finds what regressed (with an interval), when it began relative to the traffic steps, and
how many bad requests users got, on histories produced by the real engine on simulated traffic."""

from __future__ import annotations

import pytest

from rollwise.report.rca import build_rca, change_point, newcombe_interval
from rollwise.simulate import Behaviour
from rollwise.simulate.runner import T0
from support.reports import canary_spec, run_rollout


def test_change_point_finds_the_step_in_a_binomial_series() -> None:
    bad = [1, 0, 1, 0, 10, 12, 11]
    split = change_point(bad, [100] * 7)
    assert split is not None
    index, before, after, llr2 = split
    assert index == 4 and before == pytest.approx(2 / 400) and after == pytest.approx(33 / 300)
    assert llr2 > 13.8
    flat = change_point([1, 1, 0, 1, 1, 0, 1], [100] * 7)
    assert flat is None or flat[3] < 13.8
    assert change_point([5, 0], [100, 100]) is None  # only a drop: not a regression


def test_newcombe_interval_brackets_the_difference_and_handles_zero_events() -> None:
    low, high = newcombe_interval(30, 1000, 10, 1000) or (0, 0)
    assert low < 0.02 < high and low > 0
    low0, high0 = newcombe_interval(0, 500, 0, 500) or (1, 1)
    assert low0 < 0 < high0
    assert newcombe_interval(1, 0, 1, 10) is None


def test_rca_of_a_regression_that_starts_after_a_traffic_step() -> None:
    # v2 turns bad 75 s in, after the canary moved 5% -> 10% at 60 s
    store, phase = run_rollout(canary_spec(), Behaviour(change_at=75, error_rate_after=0.03))
    assert phase == "RolledBack"
    record = store.get("checkout")
    windows = store.windows("checkout")
    rca = build_rca(record, store.events("checkout"), windows)
    assert rca.failed and rca.culprit == "error-rate"
    (regression,) = rca.regressions
    assert regression.metric == "error-rate" and regression.kind == "errorRate"
    low, high = regression.interval or (0.0, 0.0)
    assert regression.difference is not None and 0 < low < regression.difference < high
    (onset,) = [o for o in rca.onset if o.series == "error rate"]
    assert onset.at is not None and 70 <= onset.at - T0 <= 90
    assert "after the canary weight moved 5% → 10%" in onset.relative
    assert onset.after > 5 * onset.before
    canary_errors = sum(w.canary.errors for _, w in windows if w.canary is not None)
    assert rca.canary_errors == canary_errors > 0
    assert rca.peak_weight == 10.0
    text = rca.text()
    for phrase in ("RolledBack", "error-rate", "95% CI", "When it began", "What the agent did", "v1", "v2"):
        assert phrase in text


def test_rca_of_a_release_bad_from_its_first_request() -> None:
    store, phase = run_rollout(canary_spec(), Behaviour(error_rate=0.05))
    assert phase == "RolledBack"
    rca = build_rca(store.get("checkout"), store.events("checkout"), store.windows("checkout"))
    (onset,) = [o for o in rca.onset if o.series == "error rate"]
    assert onset.at is None and "present from the first canary window" in onset.relative
    assert rca.detection_s is not None and rca.detection_s > 0


def test_rca_of_a_good_release_finds_nothing() -> None:
    store, phase = run_rollout(canary_spec(), Behaviour(), seed=3)
    assert phase == "Succeeded"
    rca = build_rca(store.get("checkout"), store.events("checkout"), store.windows("checkout"))
    assert not rca.failed and rca.regressions == []
    assert not [o for o in rca.onset if o.series == "error rate"]
