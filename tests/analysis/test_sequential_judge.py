"""The sequential judge end to end on simulated windows: decisions, culprits, carry, evidence."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rollwise.analysis.attribution import AttributionState, SequentialErrorTest, WindowCounts, fold
from rollwise.analysis.explain import explain, explain_verdict
from rollwise.analysis.sequential import CARRY_KEY, SequentialJudge
from rollwise.core.model import Action, Verdict, Window
from rollwise.simulate.world import Behaviour
from support.analysis import analysis, collect, context, drive_stage, world


def test_no_data_holds_and_an_outage_never_rolls_back() -> None:
    spec = analysis()
    judge = SequentialJudge(spec)
    empty = [Window(0, 1, None, None), Window(1, 2, None, None)]
    verdict = judge.evaluate(context(spec, empty))
    assert verdict.action == Action.HOLD and verdict.rule == "no-data"
    sim = world(Behaviour(), seed=3, outages=[(5.0, 200.0)])
    windows = collect(sim, 5, 0, 300)
    actions = set()
    for i in range(1, len(windows) + 1):
        v = SequentialJudge(spec).evaluate(context(spec, windows[:i])) if i % 25 == 0 else None
        if v is not None:
            actions.add(v.action)
            if 5 < i <= 200:
                assert v.action == Action.HOLD  # blind: unknown, not bad
    assert Action.ROLLBACK not in actions


@pytest.mark.parametrize(
    ("canary", "culprit"),
    [
        (Behaviour(error_rate=0.02), "errors"),
        (Behaviour(latency_p99_ms=200.0), "latency"),
    ],
)
def test_regression_rolls_back_naming_the_culprit(canary: Behaviour, culprit: str) -> None:
    spec = analysis()
    verdict, seconds = drive_stage(SequentialJudge(spec), spec, world(canary, seed=1), 5, 600)
    assert verdict.action == Action.ROLLBACK
    assert verdict.culprit == culprit and verdict.rule == "e-value-bonferroni"
    assert seconds < 120
    result = next(m for m in verdict.metrics if m.metric == culprit)
    assert result.statistic is not None and result.threshold is not None
    assert result.statistic >= result.threshold == pytest.approx(1 / (0.01 * 0.5))
    assert result.effect is not None and result.interval is not None and result.interval[0] > 0


def test_healthy_canary_expands_only_after_min_samples_and_faster_with_carry() -> None:
    spec = analysis(minSamples=2000)
    judge = SequentialJudge(spec)
    verdict, seconds = drive_stage(judge, spec, world(seed=2), 5, 600)
    assert verdict.action == Action.EXPAND and verdict.rule == "no-regression-decided"
    assert verdict.evidence["canaryRequests"] >= 2000 and seconds >= 150  # 10 canary req/s
    spec = analysis()
    first, t1 = drive_stage(SequentialJudge(spec), spec, world(seed=2), 5, 600)
    assert first.action == Action.EXPAND
    carry = first.evidence["carry"]
    assert set(carry[CARRY_KEY]) == {"errors", "latency"}
    json.dumps(carry)  # the engine persists it
    second, t2 = drive_stage(SequentialJudge(spec), spec, world(seed=5), 10, 600, carry=carry, stage=1)
    assert second.action == Action.EXPAND and t2 <= t1
    frozen = carry[CARRY_KEY]["latency"]["threshold_ms"]
    latency = next(m for m in second.metrics if m.metric == "latency")
    assert latency.params["thresholdMs"] == frozen and not latency.params["frozenInStage"]


def test_judge_false_rollbacks_with_continuous_monitoring_stay_below_alpha() -> None:
    spec = analysis(alpha=0.05, minSamples=10**9)  # never expand: watch the whole 3 minutes
    rollbacks = 0
    runs = 60
    for seed in range(runs):
        verdict, _ = drive_stage(SequentialJudge(spec), spec, world(seed=100 + seed), 10, 180)
        rollbacks += verdict.action == Action.ROLLBACK
    assert rollbacks <= 8  # alpha = 5 %: expected <= 3, 8 is the binomial 99.9 % quantile


def test_slo_gate_uses_confidence_bounds_not_point_estimates() -> None:
    spec = analysis(metrics=[{"name": "errors", "type": "errorRate", "slo": "< 0.5%"}])
    # 3 errors in 300 requests: a 1 % point estimate, twice the gate, but far from proof.
    few = [Window(0, 30, _stats(5700, 5), _stats(300, 3))]
    verdict = SequentialJudge(spec).evaluate(context(spec, few))
    gate = verdict.metrics[0].params["slo"]
    assert gate["estimate"] > 0.005 and not gate["breached"] and verdict.action != Action.ROLLBACK
    assert gate["lower"] < 0.005 < gate["upper"]
    # The same 1 % on 20x the requests is proof.
    many = [Window(0, 600, _stats(114000, 100), _stats(6000, 60))]
    verdict = SequentialJudge(spec).evaluate(context(spec, many))
    assert verdict.action == Action.ROLLBACK and verdict.rule == "slo-breach" and verdict.culprit == "errors"


def test_latency_slo_gate_is_judged_on_exceedances() -> None:
    spec = analysis(metrics=[{"name": "latency", "type": "latency", "quantile": 0.99, "slo": "< 100ms"}])
    verdict, _ = drive_stage(SequentialJudge(spec), spec, world(Behaviour(latency_p99_ms=300.0), seed=4), 25, 300)
    assert verdict.action == Action.ROLLBACK and verdict.rule == "slo-breach"


def test_rising_trend_blocks_expansion() -> None:
    spec = analysis(metrics=[{"name": "errors", "type": "errorRate", "maxIncrease": 0.05}])
    windows = []
    for second in range(300):
        rate = 0.001 + 0.02 * second / 300  # creeping up, still within the tolerance on average
        windows.append(Window(second, second + 1, _stats(1800, round(1800 * 0.001)), _stats(200, round(200 * rate))))
    verdict = SequentialJudge(spec).evaluate(context(spec, windows))
    errors = verdict.metrics[0]
    assert errors.params["trendZ"] >= 3
    assert verdict.action == Action.CONTINUE and "rising trend" in verdict.reason


def test_kpi_drop_rolls_back_and_sample_ratio_mismatch_is_inconclusive() -> None:
    kpi = {"name": "conversion", "type": "kpi", "numerator": "checkout", "denominator": "visit"}
    spec = analysis(metrics=[kpi])
    verdict, _ = drive_stage(SequentialJudge(spec), spec, world(Behaviour(conversion=0.03), seed=6), 50, 900)
    assert verdict.action == Action.ROLLBACK and verdict.culprit == "conversion"
    assert verdict.metrics[0].effect is not None and verdict.metrics[0].effect < 0
    # Visits that do not split like requests: a logging or routing bug, not a verdict on the canary.
    windows = [Window(s, s + 1, _stats(100, 0, visits=100, checkouts=5), _stats(100, 0, visits=60, checkouts=3))
               for s in range(60)]
    verdict = SequentialJudge(spec).evaluate(context(spec, windows, weight=50))
    assert verdict.action == Action.INCONCLUSIVE and verdict.rule == "sample-ratio-mismatch"


def test_verdict_is_recomputable_from_its_evidence() -> None:
    spec = analysis(metrics=[{"name": "errors", "type": "errorRate", "minEffect": 0.01},
                             {"name": "latency", "type": "latency"}])
    sim = world(Behaviour(error_rate=0.02), seed=8)
    verdict, _ = drive_stage(SequentialJudge(spec), spec, sim, 5, 300)
    assert verdict.action == Action.ROLLBACK
    evidence = json.loads(json.dumps(verdict.to_evidence()))  # as stored
    errors = next(m for m in evidence["metrics"] if m["metric"] == "errors")
    params = errors["params"]
    # 1. The rule from the recorded numbers: e-value >= 1/(w*alpha).
    assert params["weight"] == 0.5 and errors["threshold"] == pytest.approx(1 / (params["weight"] * evidence["alpha"]))
    assert errors["statistic"] >= errors["threshold"]
    # 2. The e-value from the recorded state and parameters.
    test = SequentialErrorTest(alpha=params["alpha"], tolerance=params["delta"], min_effect=params["minEffect"],
                               concern=params["concern"])
    state = AttributionState.from_dict(evidence["carry"][CARRY_KEY]["errors"]["attribution"], test.grid.size)
    assert test.e_value(state) == pytest.approx(errors["statistic"], rel=1e-6)
    assert errors["canary"]["bad"] == state.canary_bad and errors["canary"]["trials"] == state.canary_trials


def test_state_recomputes_from_the_stored_windows() -> None:
    spec = analysis(metrics=[{"name": "errors", "type": "errorRate"}])
    sim = world(Behaviour(error_rate=0.004), seed=9)
    windows = collect(sim, 10, 0, 200)
    verdict = SequentialJudge(spec).evaluate(context(spec, windows))
    stored = [Window.from_dict(json.loads(json.dumps(w.to_dict()))) for w in windows]
    test = SequentialErrorTest(alpha=0.01)
    counts = [WindowCounts(w.canary.requests, w.baseline.requests, w.canary.errors, w.baseline.errors)
              for w in stored if w.canary and w.baseline]
    state = fold(test, AttributionState(test.grid.size), counts)
    assert math.isclose(test.e_value(state), verdict.metrics[0].statistic or 0.0, rel_tol=1e-9)
    carried = verdict.evidence["carry"][CARRY_KEY]["errors"]["attribution"]["loglik"]
    assert np.allclose(state.loglik, carried, atol=1e-6)


def test_explain_names_metric_numbers_and_rule() -> None:
    spec = analysis()
    verdict, _ = drive_stage(SequentialJudge(spec), spec, world(Behaviour(error_rate=0.02), seed=1), 5, 300)
    text = explain_verdict(verdict)
    assert "Culprit: errors" in text and "e-value-bonferroni" in text and "1/(w·α)" in text
    stats = next(m for m in verdict.metrics if m.metric == "errors")
    assert f"{stats.canary['bad']:.6g} bad of {stats.canary['trials']:.8g}" in text
    assert "Decision: rollback" in text
    assert "no-data" in explain(Verdict(Action.HOLD, "x", rule="no-data").to_evidence())


def test_burn_rate_projection_fires_only_on_a_confident_fast_burn() -> None:
    from rollwise.analysis.predictive import project_burn_rate

    fires = project_burn_rate(errors=40, requests=1000, budget=0.001, alpha=0.005, limit=14.4)
    assert fires["fires"] and fires["lower"] > 0.0144
    quiet = project_burn_rate(errors=2, requests=200, budget=0.001, alpha=0.005, limit=14.4)
    assert not quiet["fires"]  # 1 % point estimate = 10x, and the lower bound is far below


def _stats(requests: int, errors: int, visits: float | None = None, checkouts: float = 0.0):  # type: ignore[no-untyped-def]
    from rollwise.core.model import VersionStats

    kpis = {"visit": float(visits), "checkout": float(checkouts)} if visits is not None else {}
    return VersionStats(requests=requests, errors=errors, kpis=kpis)
