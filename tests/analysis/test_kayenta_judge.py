"""The Kayenta-style judge: Mann-Whitney per metric over buckets, weighted score, one look per stage."""

from __future__ import annotations

from rollwise.analysis import judge_for
from rollwise.analysis.kayenta import MIN_POINTS, KayentaJudge, classify
from rollwise.core.model import Action, Window
from rollwise.simulate.world import Behaviour
from rollwise.spec.models import MetricSpec
from support.analysis import analysis, collect, context, world


def test_collects_min_points_then_passes_a_healthy_canary() -> None:
    spec = analysis(judge="kayenta")
    windows = collect(world(seed=1), 25, 0, 10 * MIN_POINTS + 10, step=10.0)
    judge = KayentaJudge(spec)
    early = judge.evaluate(context(spec, windows[:20]))
    assert early.action == Action.CONTINUE and early.rule == "collecting"
    verdict = judge.evaluate(context(spec, windows))
    assert verdict.action == Action.EXPAND and verdict.evidence["score"] >= 95


def test_regression_fails_the_score_and_names_the_metric() -> None:
    spec = analysis(judge="kayenta")
    windows = collect(world(Behaviour(latency_p99_ms=250.0), seed=2), 25, 0, 10 * MIN_POINTS + 10, step=10.0)
    verdict = KayentaJudge(spec).evaluate(context(spec, windows))
    assert verdict.action == Action.ROLLBACK and verdict.culprit == "latency"
    latency = next(m for m in verdict.metrics if m.metric == "latency")
    assert latency.params["classification"] == "High" and latency.statistic is not None and latency.statistic < 0.02


def test_no_data_holds_and_direction_matters() -> None:
    spec = analysis(judge="kayenta")
    assert KayentaJudge(spec).evaluate(context(spec, [Window(0, 10, None, None)])).action == Action.HOLD
    errors = MetricSpec(name="errors", type="errorRate")
    label, _ = classify(errors, [0.01] * 10 + [0.02] * 10, [0.001] * 20, 0.98)
    assert label == "High"
    label, _ = classify(errors, [0.01] * 2, [0.001] * 20, 0.98)
    assert label == "Nodata"


def test_registry_picks_the_statistical_judges() -> None:
    assert type(judge_for(analysis(judge="kayenta"))).__name__ == "KayentaJudge"
    assert type(judge_for(analysis())).__name__ == "SequentialJudge"
