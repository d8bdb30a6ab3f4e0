"""The experiment statistics on known answers, and the confidence sequence's coverage under peeking."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rollwise.experiments import cuped, sequential, srm
from rollwise.experiments.stats import (
    Moments,
    compare,
    comparison_alpha,
    mean_estimate,
    ratio_estimate,
    t_halfwidth,
    welch_dof,
    z_halfwidth,
)


def test_mean_estimate_is_the_sample_mean_and_its_squared_standard_error() -> None:
    est = mean_estimate(Moments.of([1.0, 2.0, 3.0, 4.0]))
    assert est.value == pytest.approx(2.5)
    assert est.unit_variance == pytest.approx(5 / 3)
    assert est.variance == pytest.approx(5 / 12)


def test_moments_add_up_like_the_concatenated_values() -> None:
    a, b = Moments.of([1.0, 5.0], [2.0, 2.0]), Moments.of([3.0], [1.0])
    both = Moments.of([1.0, 5.0, 3.0], [2.0, 2.0, 1.0])
    assert a.plus(b) == both


def test_a_ratio_that_is_exactly_proportional_has_no_variance() -> None:
    sessions = np.array([1.0, 2.0, 5.0, 3.0])
    est = ratio_estimate(Moments.of(2 * sessions, sessions))
    assert est.value == pytest.approx(2.0)
    assert est.variance == pytest.approx(0.0, abs=1e-12)


def test_ratio_variance_matches_the_spread_of_simulated_ratios() -> None:
    rng = np.random.default_rng(3)
    sessions = rng.poisson(3.0, (2000, 400)) + 1.0
    revenue = sessions * rng.gamma(2.0, 1.0, (2000, 400))
    est = ratio_estimate(Moments.of(revenue, sessions))
    assert float(np.var(est.value)) == pytest.approx(float(np.mean(est.variance)), rel=0.1)


def test_relative_lift_and_its_delta_method_variance() -> None:
    treated = mean_estimate(Moments(100.0, 110.0, 200.0))
    control = mean_estimate(Moments(100.0, 100.0, 200.0))
    c = compare(treated, control)
    assert c.relative == pytest.approx(0.1)
    expected = treated.variance / 1.0 + 1.1**2 * control.variance / 1.0
    assert c.relative_variance == pytest.approx(expected)
    assert c.n == 200


def test_fixed_horizon_intervals() -> None:
    assert z_halfwidth(1.0, 0.05) == pytest.approx(1.959964, rel=1e-6)
    equal = mean_estimate(Moments(10.0, 10.0, 20.0))
    assert welch_dof(equal, equal) == pytest.approx(18.0)
    assert t_halfwidth(1.0, 0.05, 18.0) == pytest.approx(2.100922, rel=1e-6)


def test_bonferroni_splits_alpha_over_comparisons_with_control() -> None:
    assert comparison_alpha(0.05, 2) == pytest.approx(0.05)
    assert comparison_alpha(0.05, 5) == pytest.approx(0.0125)


def test_confidence_sequence_is_tightest_near_its_tuning_n_and_wider_than_z() -> None:
    n = np.array([1_000.0, 10_000.0, 100_000.0])
    ratio = sequential.boundary(n, 0.05, 10_000.0) * np.sqrt(n) / z_halfwidth(1.0, 0.05)
    assert np.all(ratio > 1.0)
    # relative to the z interval, the sequence pays least at its tuning point
    assert ratio[1] < ratio[0] and ratio[1] < ratio[2]
    rho2 = sequential.rho_for(10_000.0, 0.05) ** 2
    by_hand = math.sqrt(2 * (1e4 * rho2 + 1) / (1e8 * rho2) * math.log(math.sqrt(1e4 * rho2 + 1) / 0.05))
    assert sequential.boundary(1e4, 0.05, 1e4) == pytest.approx(by_hand)


def _ever_misses(points: np.ndarray, variances: np.ndarray, n: np.ndarray, truth: float, half: np.ndarray) -> float:
    return float((np.abs(points - truth) > half).any(axis=1).mean())


def test_the_confidence_sequence_keeps_coverage_when_read_after_every_batch() -> None:
    """400 experiments, 60 looks each: the sequence stays at ≥ 95 %, the peeked z interval does not."""
    rng = np.random.default_rng(11)
    batch, looks = 100, 60
    values = rng.normal(1.0, 2.0, (2, 400, batch * looks))
    cumulative = [np.cumsum(v.reshape(400, looks, batch).sum(axis=2), axis=1) for v in values]
    squares = [np.cumsum((v * v).reshape(400, looks, batch).sum(axis=2), axis=1) for v in values]
    n = np.broadcast_to(batch * np.arange(1, looks + 1, dtype=float), (400, looks))
    arms = [mean_estimate(Moments(n, cumulative[i], squares[i])) for i in range(2)]
    c = compare(arms[1], arms[0])
    cs_miss = _ever_misses(c.absolute, c.absolute_variance, c.n, 0.0,
                           sequential.cs_halfwidth(c.absolute_variance, c.n, 0.05))
    z_miss = _ever_misses(c.absolute, c.absolute_variance, c.n, 0.0, z_halfwidth(c.absolute_variance, 0.05))
    assert cs_miss <= 0.05
    assert z_miss > 0.15


def test_cuped_removes_the_share_of_variance_the_covariate_explains() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(0.0, 1.0, (2, 20_000))
    y = 0.8 * x + 0.6 * rng.normal(0.0, 1.0, (2, 20_000))  # rho = 0.8
    arms = [Moments.of(y[i], x[i]) for i in range(2)]
    assert cuped.theta(arms) == pytest.approx(0.8, abs=0.02)
    raw = compare(mean_estimate(arms[1]), mean_estimate(arms[0]))
    adjusted = cuped.adjusted_estimates(arms)
    adj = compare(adjusted[1], adjusted[0])
    assert math.sqrt(adj.absolute_variance / raw.absolute_variance) == pytest.approx(0.6, rel=0.03)


def test_srm_e_value_flags_a_mismatch_and_not_the_planned_split() -> None:
    assert srm.log_e_value([5_000, 5_000], [0.5, 0.5]) < 0
    assert not srm.mismatch([5_030, 4_970], [0.5, 0.5], 0.05)
    assert srm.mismatch([5_500, 4_500], [0.5, 0.5], 0.05)
    assert srm.mismatch([3_000, 3_000, 4_000], [0.25, 0.25, 0.5], 0.05)
    assert not srm.mismatch([2_520, 2_480, 5_000], [0.25, 0.25, 0.5], 0.05)


def test_srm_prediction_grows_as_the_mismatch_shrinks() -> None:
    big, small = srm.predicted_n([0.52, 0.48], [0.5, 0.5], 0.05), srm.predicted_n([0.51, 0.49], [0.5, 0.5], 0.05)
    assert 1_000 < big < small < 100_000
    assert srm.predicted_n([0.5, 0.5], [0.5, 0.5], 0.05) == math.inf


def test_srm_keeps_its_false_alarm_rate_when_read_after_every_batch() -> None:
    rng = np.random.default_rng(2)
    first = np.cumsum(rng.binomial(200, 0.5, (500, 300)), axis=1)
    counts = np.stack([first, 200 * np.arange(1, 301) - first], axis=-1)
    assert srm.mismatch(counts, [0.5, 0.5], 0.05).any(axis=1).mean() <= 0.05
