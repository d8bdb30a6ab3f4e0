"""The effect a decision reports (canary rate − baseline rate, with its interval) and no-data holds."""

from __future__ import annotations

import numpy as np
import pytest

from rollwise.analysis.explain import explain_verdict
from rollwise.analysis.latency import frozen_bound
from rollwise.analysis.sequential import SequentialJudge
from rollwise.core.model import Action, VersionStats, Window
from rollwise.simulate.world import Behaviour
from support.analysis import analysis, collect, context, drive_stage, world


def _stats(requests: int, errors: int) -> VersionStats:
    return VersionStats(requests=requests, errors=errors)


def _errors_result(verdict):  # type: ignore[no-untyped-def]
    return next(m for m in verdict.metrics if m.metric == "errors")


def test_effect_is_the_rate_difference_even_when_the_baseline_saw_no_error() -> None:
    spec = analysis(metrics=[{"name": "errors", "type": "errorRate"}])
    # canary 14.5 % (29 of 200), baseline 0 of 3800: the old estimate said "+0 pp [+0, +0]".
    windows = [Window(s, s + 1, _stats(190, 0), _stats(10, 2 if s < 9 else 1)) for s in range(20)]
    verdict = SequentialJudge(spec).evaluate(context(spec, windows))
    result = _errors_result(verdict)
    canary = sum(w.canary.errors for w in windows if w.canary) / 200
    assert canary == pytest.approx(0.145)
    assert result.effect == pytest.approx(canary - 0.0)
    assert result.interval is not None
    low, high = result.interval
    assert 0.0 < low < canary < high < 1.0  # excludes "no increase", contains the estimate
    assert verdict.action == Action.ROLLBACK
    text = explain_verdict(verdict)
    assert "+14.5 pp" in text and "canary rate − baseline rate" in text and "+0 pp" not in text


def test_effect_interval_covers_the_true_difference_at_every_look() -> None:
    """Anytime coverage: over seeded runs, the interval misses the true difference at *any* of
    the looks in at most ~4 alpha of runs (alpha = the metric's share, here 0.05)."""
    spec = analysis(alpha=0.1, minSamples=10**9, metrics=[{"name": "errors", "type": "errorRate"},
                                                          {"name": "latency", "type": "latency"}])
    truth = 0.004 - 0.001
    misses = 0
    runs = 40
    for seed in range(runs):
        sim = world(Behaviour(error_rate=0.004), seed=500 + seed)
        windows = collect(sim, 25, 0, 120)
        judge = SequentialJudge(spec)
        missed = False
        for i in range(5, len(windows) + 1, 5):
            result = _errors_result(judge.evaluate(context(spec, windows[:i], weight=25)))
            assert result.interval is not None and result.params["effectCoverage"] == pytest.approx(0.8)
            low, high = result.interval
            missed = missed or not (low <= truth <= high)
        misses += missed
    assert misses <= 6  # 4 alpha = 20 % is the guarantee; the bounds are conservative in practice


def test_effect_is_reported_for_latency_as_a_difference_of_slow_shares() -> None:
    spec = analysis()
    verdict, _ = drive_stage(SequentialJudge(spec), spec, world(Behaviour(latency_p99_ms=250.0), seed=3), 5, 300)
    assert verdict.action == Action.ROLLBACK and verdict.culprit == "latency"
    latency = next(m for m in verdict.metrics if m.metric == "latency")
    canary = latency.canary["bad"] / latency.canary["trials"]
    baseline = latency.baseline["bad"] / latency.baseline["trials"]
    assert latency.effect == pytest.approx(canary - baseline) and latency.effect > 0.02
    assert latency.interval is not None and 0 < latency.interval[0] < latency.effect < latency.interval[1]


def test_a_window_without_data_never_rolls_back_even_after_damning_evidence() -> None:
    spec = analysis(metrics=[{"name": "errors", "type": "errorRate"}])
    judge = SequentialJudge(spec)
    bad = [Window(s, s + 1, _stats(190, 0), _stats(10, 3)) for s in range(10)]
    assert judge.evaluate(context(spec, bad)).action == Action.ROLLBACK
    blind = [*bad, Window(10, 11, None, None)]
    verdict = judge.evaluate(context(spec, blind))
    assert verdict.action == Action.HOLD and verdict.rule == "no-data"
    half_blind = [*bad, Window(10, 11, _stats(190, 0), None)]
    assert SequentialJudge(spec).evaluate(context(spec, half_blind)).action == Action.HOLD


def test_no_window_without_data_rolls_back_over_many_outage_runs() -> None:
    spec = analysis()
    for seed in range(20):
        sim = world(Behaviour(error_rate=0.03), seed=seed, outages=[(3.0, 40.0), (41.0, 60.0)])
        windows = collect(sim, 5, 0, 80)
        judge = SequentialJudge(spec)
        for i in range(1, len(windows) + 1):
            verdict = judge.evaluate(context(spec, windows[:i]))
            if not windows[i - 1].has_data:
                assert verdict.action == Action.HOLD


def test_latency_bar_is_the_bound_nearest_the_baseline_quantile() -> None:
    rng = np.random.default_rng(0)
    chosen, upper_edges = [], []
    for _ in range(100):
        windows = collect(world(seed=int(rng.integers(1 << 30))), 5, 0, 6)
        pooled = VersionStats.merge([w.baseline for w in windows if w.baseline])
        chosen.append(frozen_bound(pooled, 0.99))
        rank = 0.99 * pooled.latency_buckets[-1][1]
        upper_edges.append(next(b for b, c in pooled.latency_buckets if c >= rank))
    # The baseline's p99 is 100 ms, a bucket bound. The bucket's upper edge flips to 125 ms about
    # half the time; the nearest bound to the interpolated p99 mostly stays at 100 ms.
    assert set(chosen) <= {100.0, 125.0}
    assert chosen.count(100.0) >= 75 and chosen.count(100.0) > upper_edges.count(100.0) + 15
    overflow = VersionStats(latency_buckets=((100.0, 10), (float("inf"), 1000)))
    assert frozen_bound(overflow, 0.99) is None
