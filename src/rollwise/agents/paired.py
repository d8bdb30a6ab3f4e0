"""The paired sequential test: canary against stable on the same tasks, valid at every look.

The unit is a **task**, not a task-run: each task of a batch is run ``k`` times on both versions and
gives one bounded difference ``x = stable pass share - canary pass share`` in [-1, 1] (positive: the
canary is worse). Averaging the ``k`` runs inside a task keeps the test honest when runs of one task
are not alike (a flaky agent): only tasks are assumed to be drawn independently, never runs.

Two betting e-processes (Waudby-Smith & Ramdas, "Estimating means of bounded random variables by
betting", 2023) watch the mean of ``x``:

* **rollback side** — null ``E[x] <= tolerance`` (the canary is no worse than tolerated). Wealth
  ``prod(1 + l_i (x_i - tolerance))`` with ``l_i >= 0`` chosen from the tasks before ``i`` only
  (predictable plug-in, ``mean / (variance + mean^2)``, shrunk towards the effect of concern). Under
  the null every factor has expectation <= 1, so the wealth is a nonnegative supermartingale and
  Ville's inequality gives ``P(wealth ever >= 1/alpha) <= alpha`` whatever the looks or the stop.
* **no-regression side** — null ``E[x] >= tolerance + concern``; its wealth reaching ``1/beta``
  rules the effect of concern out (the canary may expand), with miss probability <= beta.

Every function takes numbers or numpy arrays alike, so the judge (one rollout) and the benchmark
(thousands of simulated rollouts at once) run the same arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Pseudo-tasks of prior belief behind the first bets (the effect of concern, a task variance of
#: ``PRIOR_VARIANCE``). Fixed before any data, so they shape power only, never validity.
PRIOR_TASKS = 4.0
PRIOR_VARIANCE = 0.12
#: The largest share of wealth bet on one task, as a fraction of what would bust it.
MAX_BET = 0.8


@dataclass(frozen=True)
class BetState:
    """One side's running sums: tasks seen, sum and sum of squares of its outcomes, log-wealth."""

    n: float = 0.0
    total: float = 0.0
    squares: float = 0.0
    log_wealth: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {"n": self.n, "total": self.total, "squares": self.squares, "logWealth": self.log_wealth}

    @classmethod
    def from_dict(cls, data: Any) -> BetState:
        if not isinstance(data, dict):
            return cls()
        return cls(float(data.get("n", 0.0)), float(data.get("total", 0.0)), float(data.get("squares", 0.0)),
                   float(data.get("logWealth", 0.0)))


def bet_fraction(n: Any, total: Any, squares: Any, prior_mean: float, bound: float) -> Any:
    """The predictable plug-in bet: ``m / (v + m^2)`` from the outcomes so far and the prior, in [0, MAX_BET/bound].

    ``bound`` is the largest loss an outcome can bring (``-outcome <= bound``), so ``1 + l * outcome > 0``.
    """
    weight = PRIOR_TASKS + n
    mean = (PRIOR_TASKS * prior_mean + total) / weight
    # second moment around the running mean: the prior's spread plus the data's
    second = (PRIOR_TASKS * (PRIOR_VARIANCE + prior_mean**2) + squares) / weight
    variance = np.maximum(second - mean**2, 1e-4)
    return np.clip(mean / (variance + mean**2), 0.0, MAX_BET / bound)


def step(n: Any, total: Any, squares: Any, log_wealth: Any, outcome: Any, prior_mean: float,
         bound: float) -> tuple[Any, Any, Any, Any]:
    """One task's outcome (``outcome = direction * (x - null)``) folded into a side's sums and wealth."""
    fraction = bet_fraction(n, total, squares, prior_mean, bound)
    log_wealth = log_wealth + np.log1p(fraction * outcome)
    return n + 1, total + outcome, squares + outcome**2, log_wealth


@dataclass(frozen=True)
class PairedTest:
    """Both sides for one quantity (mean pass share, or pass^k), with their bars."""

    alpha: float
    beta: float = 0.05
    tolerance: float = 0.0
    concern: float = 0.1

    @property
    def rollback_bar(self) -> float:
        return float(np.log(1.0 / self.alpha))

    @property
    def accept_bar(self) -> float:
        return float(np.log(1.0 / self.beta))

    @property
    def accept_bound(self) -> float:
        """The most an accept-side outcome can lose (the canary passing all, the stable none)."""
        return max(1.0 - self.tolerance - self.concern, 0.05)

    def rollback_outcome(self, x: Any) -> Any:
        return x - self.tolerance

    def accept_outcome(self, x: Any) -> Any:
        return self.tolerance + self.concern - x

    def fold(self, rollback: BetState, accept: BetState, diffs: list[float]) -> tuple[BetState, BetState]:
        """The two sides after the tasks ``diffs`` (stable minus canary, in task order)."""
        r = (rollback.n, rollback.total, rollback.squares, rollback.log_wealth)
        a = (accept.n, accept.total, accept.squares, accept.log_wealth)
        for x in diffs:
            r = step(*r, self.rollback_outcome(x), self.concern, 1.0 + self.tolerance)
            a = step(*a, self.accept_outcome(x), self.tolerance + self.concern, self.accept_bound)
        return BetState(*(float(v) for v in r)), BetState(*(float(v) for v in a))

    def rejected(self, rollback: BetState) -> bool:
        return rollback.log_wealth >= self.rollback_bar

    def accepted(self, accept: BetState) -> bool:
        return accept.log_wealth >= self.accept_bar

    def params(self) -> dict[str, float]:
        return {"alpha": self.alpha, "beta": self.beta, "delta": self.tolerance, "concern": self.concern}


def fixed_sample_size(alpha: float, beta: float, effect: float, sd: float) -> float:
    """Tasks (or run pairs) a one-sided fixed-size paired z-test needs: ``((z_a + z_b) sd / effect)^2``."""
    from scipy.stats import norm

    return float(((norm.isf(alpha) + norm.isf(beta)) * sd / effect) ** 2)


def pass_k(runs: list[int]) -> int:
    """1 when every one of a task's k runs passed (tau-bench's pass^k for one task), else 0."""
    return int(bool(runs) and all(runs))
