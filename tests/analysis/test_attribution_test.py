"""The attribution e-processes: valid under continuous monitoring, powerful, and foldable across stages."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from rollwise.analysis.attribution import AttributionState, SequentialErrorTest, WindowCounts, fold

RUNS = 300
WINDOWS = 400


def _a_a_rejections(test: SequentialErrorTest, seed: int, drift: bool) -> int:
    """Healthy canaries watched after every window; count how many runs ever reject."""
    rng = np.random.default_rng(seed)
    rejected = 0
    for _ in range(RUNS):
        state = AttributionState(test.grid.size)
        for w in range(WINDOWS):
            total = rng.poisson(200 * (5 if drift and w % 37 == 0 else 1))
            share = 0.05 if not drift else (0.05 if w < WINDOWS // 2 else 0.25)
            nc = rng.binomial(total, share)
            nb = total - nc
            rate = 0.004 * (4 if drift and w % 37 == 0 else 1)  # bursts hit both versions alike
            state = test.update(state, WindowCounts(nc, nb, rng.binomial(nc, rate), rng.binomial(nb, rate)))
            if test.e_value(state) >= 1 / test.alpha:
                rejected += 1
                break
    return rejected


@pytest.mark.parametrize("min_effect", [None, 0.01])
@pytest.mark.parametrize("drift", [False, True])
def test_a_a_false_rejections_stay_below_alpha_at_every_look(min_effect: float | None, drift: bool) -> None:
    alpha = 0.05
    test = SequentialErrorTest(alpha=alpha, min_effect=min_effect)
    rejected = _a_a_rejections(test, seed=11 if drift else 7, drift=drift)
    # Ville: P(ever reject) <= alpha. Allow binomial noise at the 99.9 % level, nothing more.
    assert rejected <= binom.ppf(0.999, RUNS, alpha), rejected


def test_naive_repeated_fixed_sample_test_would_not_be_valid() -> None:
    """The contrast that motivates e-values: a z-test looked at every window rejects far too often."""
    rng = np.random.default_rng(3)
    rejected = 0
    for _ in range(200):
        c = n = b = m = 0
        for _ in range(WINDOWS):
            nc = rng.binomial(200, 0.05)
            c += rng.binomial(nc, 0.004)
            n += nc
            b += rng.binomial(200 - nc, 0.004)
            m += 200 - nc
            pooled = (c + b) / (n + m)
            if pooled > 0:
                z = (c / n - b / m) / math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
                if z > 1.645:
                    rejected += 1
                    break
    assert rejected / 200 > 0.15


@pytest.mark.parametrize("min_effect", [None, 0.01])
def test_power_errors_from_0_1_to_2_percent(min_effect: float | None) -> None:
    rng = np.random.default_rng(5)
    test = SequentialErrorTest(alpha=0.01, min_effect=min_effect)
    times = []
    for _ in range(100):
        state = AttributionState(test.grid.size)
        for second in range(1, 301):
            nc = rng.binomial(200, 0.05)
            counts = WindowCounts(nc, 200 - nc, rng.binomial(nc, 0.02), rng.binomial(200 - nc, 0.001))
            state = test.update(state, counts)
            if test.outcome(state).rejected:
                times.append(second)
                break
    assert len(times) >= 99  # detected in (nearly) every run within 5 minutes
    assert float(np.median(times)) <= 30  # the Wald bound is ~10 s at this traffic


def test_accept_side_decides_no_regression_and_never_for_a_large_regression() -> None:
    rng = np.random.default_rng(9)
    test = SequentialErrorTest(alpha=0.01, concern=0.01)
    healthy = AttributionState(test.grid.size)
    bad = AttributionState(test.grid.size)
    for _ in range(120):
        nc = rng.binomial(200, 0.05)
        fine = WindowCounts(nc, 200 - nc, rng.binomial(nc, 0.001), rng.binomial(200 - nc, 0.001))
        healthy = test.update(healthy, fine)
        bad = test.update(bad, WindowCounts(nc, 200 - nc, rng.binomial(nc, 0.03), rng.binomial(200 - nc, 0.001)))
    assert test.outcome(healthy).accepted and not test.outcome(healthy).rejected
    assert not test.outcome(bad).accepted and test.outcome(bad).rejected


def test_tolerance_makes_a_small_increase_acceptable() -> None:
    rng = np.random.default_rng(2)
    strict = SequentialErrorTest(alpha=0.01)
    tolerant = SequentialErrorTest(alpha=0.01, tolerance=0.01)
    s_strict = AttributionState(strict.grid.size)
    s_tolerant = AttributionState(tolerant.grid.size)
    for _ in range(600):
        nc = rng.binomial(400, 0.25)
        counts = WindowCounts(nc, 400 - nc, rng.binomial(nc, 0.006), rng.binomial(400 - nc, 0.001))
        s_strict, s_tolerant = strict.update(s_strict, counts), tolerant.update(s_tolerant, counts)
    assert strict.outcome(s_strict).rejected  # +0.5 pp is a regression when none is tolerated
    assert not tolerant.outcome(s_tolerant).rejected  # but not when +1 pp is


def test_state_round_trips_and_folding_in_two_stages_equals_one() -> None:
    rng = np.random.default_rng(4)
    test = SequentialErrorTest(alpha=0.01, min_effect=0.01)
    windows = []
    for _ in range(200):
        nc = rng.binomial(200, 0.1)
        windows.append(WindowCounts(nc, 200 - nc, rng.binomial(nc, 0.004), rng.binomial(200 - nc, 0.002)))
    whole = fold(test, AttributionState(test.grid.size), windows)
    first = fold(test, AttributionState(test.grid.size), windows[:80])
    carried = AttributionState.from_dict(first.to_dict(), test.grid.size)
    second = fold(test, carried, windows[80:])
    assert np.allclose(whole.loglik, second.loglik, atol=1e-6)
    assert math.isclose(whole.sprt_llr, second.sprt_llr, abs_tol=1e-6)
    assert math.isclose(test.e_value(whole), test.e_value(second), rel_tol=1e-6)
    # Likelihoods (so likelihood-ratio e-values) multiply across independent runs: the carried
    # grid log-likelihood is the sum of the runs' own.
    run1 = fold(test, AttributionState(test.grid.size), windows[:80])
    run2 = fold(test, AttributionState(test.grid.size), windows[80:])
    assert np.allclose(second.loglik, run1.loglik + run2.loglik, atol=1e-6)
