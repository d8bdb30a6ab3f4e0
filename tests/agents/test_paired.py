"""The paired betting e-process: valid under the null at every look, powerful against a drop."""

from __future__ import annotations

import numpy as np
import pytest

from rollwise.agents.paired import BetState, PairedTest, fixed_sample_size, pass_k, step


def _run(p: np.ndarray, q: np.ndarray, test: PairedTest, sims: int, tasks: int, k: int,
         seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ever crossed the rollback bar / the accept bar, looking after every task."""
    rng = np.random.default_rng(seed)
    r = [np.zeros(sims) for _ in range(4)]
    a = [np.zeros(sims) for _ in range(4)]
    ever_r = np.zeros(sims, dtype=bool)
    ever_a = np.zeros(sims, dtype=bool)
    for _ in range(tasks):
        idx = rng.integers(0, len(p), sims)
        x = (rng.random((sims, k)) < p[idx, None]).mean(1) - (rng.random((sims, k)) < q[idx, None]).mean(1)
        r = list(step(*r, test.rollback_outcome(x), test.concern, 1 + test.tolerance))
        a = list(step(*a, test.accept_outcome(x), test.tolerance + test.concern, test.accept_bound))
        ever_r |= r[3] >= test.rollback_bar
        ever_a |= a[3] >= test.accept_bar
    return ever_r, ever_a


def test_no_false_rollback_beyond_alpha_even_looking_after_every_task() -> None:
    rng = np.random.default_rng(3)
    p = rng.beta(2, 0.5, 100)
    test = PairedTest(alpha=0.05, concern=0.1)
    crossed, _ = _run(p, p, test, sims=3000, tasks=300, k=3, seed=4)
    assert crossed.mean() <= 0.05


def test_a_same_mean_flaky_canary_is_not_a_regression_of_the_mean() -> None:
    rng = np.random.default_rng(5)
    p = rng.beta(2, 0.5, 100)
    flaky = np.full_like(p, p.mean())  # same mean, every task a coin
    crossed, _ = _run(p, flaky, PairedTest(alpha=0.05, concern=0.1), sims=3000, tasks=300, k=3, seed=6)
    assert crossed.mean() <= 0.05


def test_a_ten_point_drop_is_found_and_an_equal_agent_is_accepted() -> None:
    rng = np.random.default_rng(7)
    p = rng.beta(2, 0.5, 100) * 0.8 / 0.8
    p = p * 0.8 / p.mean()
    test = PairedTest(alpha=0.01, concern=0.1)
    crossed, accepted = _run(p, p * 7 / 8, test, sims=500, tasks=400, k=3, seed=8)
    assert crossed.mean() >= 0.95
    assert accepted.mean() <= 0.05
    _, accepted_same = _run(p, p, test, sims=500, tasks=400, k=3, seed=9)
    assert accepted_same.mean() >= 0.95


def test_fold_matches_the_vectorised_step_and_round_trips() -> None:
    test = PairedTest(alpha=0.01, tolerance=0.02, concern=0.1)
    diffs = [1.0, 0.0, 1 / 3, -2 / 3, 1.0]
    rollback, accept = test.fold(BetState(), BetState(), diffs)
    r = (0.0, 0.0, 0.0, 0.0)
    for x in diffs:
        r = step(*r, x - 0.02, 0.1, 1.02)
    assert rollback.log_wealth == pytest.approx(float(r[3]))
    assert rollback.n == 5 and accept.n == 5
    assert BetState.from_dict(rollback.to_dict()) == rollback
    assert accept.log_wealth < 0 < rollback.log_wealth  # the canary did worse: no evidence it is fine


def test_fixed_size_arithmetic() -> None:
    # ((2.326 + 1.645) * 0.3 / 0.1)^2 = 141.9
    assert fixed_sample_size(0.01, 0.05, 0.1, 0.3) == pytest.approx(141.9, abs=0.2)


def test_pass_k() -> None:
    assert pass_k([1, 1, 1]) == 1
    assert pass_k([1, 0, 1]) == 0
    assert pass_k([]) == 0
