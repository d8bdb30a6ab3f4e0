"""Per-variant estimates from sufficient statistics, their differences, and fixed-horizon intervals.

Everything here works on *sufficient statistics* (n, sums, sums of squares and cross products), not
on raw events: the store aggregates millions of events into a few numbers per variant in SQL, and the
statistics run on those. Every function takes floats or numpy arrays of the same shape, so the
benchmark can read 1,000 simulated experiments at every batch in one vectorised call.

Means and proportions (a conversion is a 0/1 value) share one estimator; a ratio metric (revenue per
session, where both are per-subject sums) uses the delta method; relative lift ``t / c - 1`` uses the
delta method too (the variance of a ratio of two independent means), as GrowthBook and Spotify's
``confidence`` do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

#: A float, or a numpy array of floats (one per simulated experiment): the functions broadcast.
Num = Any


@dataclass(frozen=True)
class Moments:
    """Sufficient statistics of one variant's per-subject values.

    ``y`` is the metric (a conversion 0/1, revenue, a count, a duration; the numerator of a ratio).
    ``x`` is either a pre-experiment covariate (CUPED) or the denominator of a ratio metric; its sums
    are zero when the metric has neither.
    """

    n: Num
    y_sum: Num
    y_sum_sq: Num
    x_sum: Num = 0.0
    x_sum_sq: Num = 0.0
    xy_sum: Num = 0.0

    @classmethod
    def of(cls, y: Any, x: Any = None, axis: int = -1) -> Moments:
        """The statistics of raw per-subject values (along ``axis``): for tests and simulations."""
        y = np.asarray(y, dtype=float)
        n = np.asarray(y.shape[axis], dtype=float)
        if x is None:
            return cls(n, y.sum(axis), (y * y).sum(axis))
        x = np.asarray(x, dtype=float)
        return cls(n, y.sum(axis), (y * y).sum(axis), x.sum(axis), (x * x).sum(axis), (x * y).sum(axis))

    def plus(self, other: Moments) -> Moments:
        return Moments(self.n + other.n, self.y_sum + other.y_sum, self.y_sum_sq + other.y_sum_sq,
                       self.x_sum + other.x_sum, self.x_sum_sq + other.x_sum_sq, self.xy_sum + other.xy_sum)

    @property
    def y_mean(self) -> Num:
        return self.y_sum / self.n

    @property
    def x_mean(self) -> Num:
        return self.x_sum / self.n

    @property
    def y_var(self) -> Num:
        """Sample variance of y (n − 1 in the denominator)."""
        return np.maximum(self.y_sum_sq - self.y_sum * self.y_sum / self.n, 0.0) / (self.n - 1)

    @property
    def x_var(self) -> Num:
        return np.maximum(self.x_sum_sq - self.x_sum * self.x_sum / self.n, 0.0) / (self.n - 1)

    @property
    def xy_cov(self) -> Num:
        return (self.xy_sum - self.x_sum * self.y_sum / self.n) / (self.n - 1)


@dataclass(frozen=True)
class Estimate:
    """A variant's point estimate, the variance of that estimate (squared standard error) and its n."""

    value: Num
    variance: Num
    n: Num
    unit_variance: Num
    """Variance per subject (``variance * n``): what the confidence sequence's width scales with."""


def mean_estimate(m: Moments) -> Estimate:
    """The mean of y (a proportion when y is 0/1) and its squared standard error."""
    return Estimate(m.y_mean, m.y_var / m.n, m.n, m.y_var)


def ratio_estimate(m: Moments) -> Estimate:
    """sum(y) / sum(x) per variant (revenue per session), its variance by the delta method.

    Var(ȳ/x̄) ≈ (σ²_y / x̄² − 2 ȳ σ_xy / x̄³ + ȳ² σ²_x / x̄⁴) / n, subjects being the independent units.
    """
    ybar, xbar = m.y_mean, m.x_mean
    unit = m.y_var / xbar**2 - 2 * ybar * m.xy_cov / xbar**3 + ybar**2 * m.x_var / xbar**4
    unit = np.maximum(unit, 0.0)
    return Estimate(ybar / xbar, unit / m.n, m.n, unit)


@dataclass(frozen=True)
class Comparison:
    """Treatment against control: absolute and relative difference with their variances."""

    absolute: Num
    absolute_variance: Num
    relative: Num
    relative_variance: Num
    n: Num
    """Subjects in both arms: the confidence sequence's clock."""


def compare(treatment: Estimate, control: Estimate) -> Comparison:
    """Differences of two independent estimates; relative lift ``t/c − 1`` by the delta method."""
    t, c = treatment.value, control.value
    relative_variance = treatment.variance / c**2 + t**2 * control.variance / c**4
    return Comparison(t - c, treatment.variance + control.variance, t / c - 1, relative_variance,
                      treatment.n + control.n)


def welch_dof(treatment: Estimate, control: Estimate) -> Num:
    """Welch–Satterthwaite degrees of freedom for the difference of two means."""
    vt, vc = treatment.variance, control.variance
    return (vt + vc) ** 2 / (vt**2 / (treatment.n - 1) + vc**2 / (control.n - 1))


def z_halfwidth(variance: Num, alpha: float) -> Num:
    """Half-width of the two-sided fixed-horizon z interval."""
    return float(scipy_stats.norm.ppf(1 - alpha / 2)) * np.sqrt(variance)


def t_halfwidth(variance: Num, alpha: float, dof: Num) -> Num:
    """Half-width of the two-sided fixed-horizon Student t interval (Welch dof)."""
    return scipy_stats.t.ppf(1 - alpha / 2, dof) * np.sqrt(variance)


def comparison_alpha(alpha: float, variants: int) -> float:
    """Bonferroni: each of the ``variants − 1`` comparisons with control gets an equal share of alpha.

    Valid under any dependence (all arms share the control), and with confidence sequences it holds
    at every look: the family's chance of any false claim, ever, stays ≤ alpha.
    """
    return alpha / max(variants - 1, 1)
