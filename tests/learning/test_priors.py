"""Priors from past releases: shrinkage toward all services', a bounded cost when wrong, validity kept."""

from __future__ import annotations

import math

import numpy as np

from rollwise.analysis.attribution import AttributionState, MixturePrior, SequentialErrorTest, WindowCounts
from rollwise.core.releases import PastEffect
from rollwise.learning.priors import FLAT_SHARE, MIN_SD, POOL_WEIGHT, fit_prior, fit_priors, regression_logs
from rollwise.spec.models import MetricSpec


def _effect(service: str, ratio: float, regression: bool = True, metric: str = "errors") -> PastEffect:
    # 40 canary bad of 1000 vs a baseline at 1000/ratio per 20 000: a well-measured ratio
    return PastEffect(service=service, metric=metric, metric_type="errorRate", rollout=f"{service}-{ratio}",
                      run=1, finished_at=0.0, outcome="RolledBack", regression=regression, ratio=ratio,
                      canary_trials=1000.0, canary_bad=40.0, baseline_trials=20_000.0,
                      baseline_bad=800.0 / ratio)


def test_no_history_keeps_the_flat_mixture() -> None:
    assert fit_prior([], []) is None
    assert fit_priors("svc", [MetricSpec(name="errors")], []) == {}


def test_a_service_with_little_history_follows_everyone_with_much_its_own() -> None:
    others = [_effect("search", 3.0) for _ in range(20)]
    few = fit_priors("checkout", [MetricSpec(name="errors")], [*others, _effect("checkout", 30.0)])["errors"]
    many = fit_priors("checkout", [MetricSpec(name="errors")],
                      [*others, *(_effect("checkout", 30.0) for _ in range(60))])["errors"]
    assert few.source == many.source == "service+pooled"
    assert few.service_releases == 1 and many.service_releases == 60
    assert math.exp(few.mean) < 6.0  # mostly everyone's ratio 3
    assert math.exp(many.mean) > 20.0  # mostly its own ratio 30
    pooled_only = fit_priors("new", [MetricSpec(name="errors")], others)["errors"]
    assert pooled_only.source == "pooled" and abs(math.exp(pooled_only.mean) - 3.0) < 0.3


def test_healthy_releases_and_stated_min_effects_teach_nothing() -> None:
    healthy = [_effect("checkout", 1.0, regression=False) for _ in range(10)]
    assert fit_priors("checkout", [MetricSpec(name="errors")], healthy) == {}
    stated = MetricSpec(name="errors", minEffect=0.01)
    assert fit_priors("checkout", [stated], [_effect("checkout", 20.0)]) == {}


def test_the_spread_has_a_floor_and_the_flat_share_stays() -> None:
    prior = fit_prior([(math.log(20.0), 0.0)] * 30, [(math.log(20.0), 0.0)] * 30)
    assert prior is not None
    assert prior.sd == MIN_SD and prior.flat == FLAT_SHARE and POOL_WEIGHT > 0


def _state(test: SequentialErrorTest, windows: list[WindowCounts]) -> AttributionState:
    state = AttributionState(test.grid.size)
    for window in windows:
        state = test.update(state, window)
    return state


def test_a_wrong_prior_costs_at_most_ln_one_over_its_flat_share() -> None:
    """E(prior) >= flat * E(flat mixture) on any data: a misleading history's cost is bounded."""
    rng = np.random.default_rng(3)
    flat = SequentialErrorTest(alpha=0.01)
    wrong = SequentialErrorTest(alpha=0.01, prior=MixturePrior(mean=math.log(300.0), sd=0.5, flat=0.25))
    for _ in range(20):
        windows = [WindowCounts(10, 190, float(rng.binomial(10, 0.02)), float(rng.binomial(190, 0.001)))
                   for _ in range(30)]
        state = _state(flat, windows)
        assert wrong.e_value(state) >= 0.25 * flat.e_value(state) * (1 - 1e-9)


def test_a_right_prior_finds_the_regression_with_more_evidence() -> None:
    windows = [WindowCounts(10, 190, 1.0 if i % 5 == 0 else 0.0, 0.0 if i % 4 else 1.0) for i in range(20)]
    flat = SequentialErrorTest(alpha=0.01)
    right = SequentialErrorTest(alpha=0.01, prior=MixturePrior(mean=math.log(20.0), sd=0.5, flat=0.25))
    state = _state(flat, windows)
    assert right.e_value(state) > 1.5 * flat.e_value(state)


def test_any_fixed_prior_keeps_the_false_rollback_bound() -> None:
    """Under no regression the prior mixture is still an e-process: crossing 1/alpha stays rare."""
    rng = np.random.default_rng(11)
    test = SequentialErrorTest(alpha=0.05, prior=MixturePrior(mean=math.log(1.5), sd=0.5, flat=0.25))
    crossed = 0
    runs = 400
    for _ in range(runs):
        state = AttributionState(test.grid.size)
        for _ in range(60):
            state = test.update(state, WindowCounts(50, 950, float(rng.binomial(50, 0.01)),
                                                    float(rng.binomial(950, 0.01))))
            if test.e_value(state) >= 1.0 / test.alpha:
                crossed += 1
                break
    assert crossed / runs <= 0.05 + 2.5 * math.sqrt(0.05 * 0.95 / runs)


def _stopped_effect(test: SequentialErrorTest, rng: np.random.Generator, ratio: float) -> PastEffect:
    """One past regression: windows of 10 canary / 190 baseline requests until the test rolls back."""
    state, canary, baseline = AttributionState(test.grid.size), [0.0, 0.0], [0.0, 0.0]
    while test.e_value(state) < 1.0 / test.alpha:
        window = WindowCounts(10, 190, float(rng.binomial(10, 0.01 * ratio)), float(rng.binomial(190, 0.01)))
        state = test.update(state, window)
        canary = [canary[0] + 10, canary[1] + window.canary_bad]
        baseline = [baseline[0] + 190, baseline[1] + window.baseline_bad]
    return PastEffect(service="checkout", metric="errors", metric_type="errorRate", rollout="past", run=1,
                      finished_at=0.0, outcome="RolledBack", regression=True, ratio=ratio,
                      canary_trials=canary[0], canary_bad=canary[1], baseline_trials=baseline[0],
                      baseline_bad=baseline[1])


def test_the_centre_is_not_pulled_up_by_tests_that_stopped_on_a_lucky_extreme() -> None:
    """Thirty past regressions of one true ratio 3, each estimated when its sequential test stopped:
    the plain mean of those estimates reads well above 3 (early stops are extreme); the prior's
    information-weighted centre stays near 3 (Wald's identity)."""
    rng = np.random.default_rng(5)
    test = SequentialErrorTest(alpha=0.01)
    estimates = regression_logs(_stopped_effect(test, rng, 3.0) for _ in range(30))
    plain = math.exp(float(np.mean([v for v, _ in estimates])))
    prior = fit_prior(estimates, estimates)
    assert prior is not None
    assert plain > 3.6
    assert abs(math.exp(prior.mean) - 3.0) < 0.45
