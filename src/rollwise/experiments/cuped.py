"""CUPED: variance reduction with a pre-experiment covariate (Deng, Xu, Kohavi & Walker, 2013).

Each subject's metric y is adjusted by what its pre-experiment value x predicts:
``y − θ (x − x̄)`` with ``θ = cov(x, y) / var(x)`` pooled over the arms being compared. Assignment is
random, so x is independent of the arm and the adjustment leaves the difference's expectation alone,
while the variance falls by the factor ``1 − ρ²`` (ρ the correlation of x and y): the interval
shrinks by ``sqrt(1 − ρ²)``, and the experiment needs ``1 − ρ²`` as many subjects.

θ is estimated from the experiment itself (both arms pooled), as GrowthBook and Eppo do; the error
this adds is O(1/n) and the benchmark measures the shrinkage that remains.
"""

from __future__ import annotations

from rollwise.experiments.stats import Estimate, Moments, Num


def theta(arms: list[Moments]) -> Num:
    """The pooled regression slope of y on x: Σ cov(x, y)(n−1) / Σ var(x)(n−1) over the arms."""
    cov = sum(a.xy_cov * (a.n - 1) for a in arms)
    var = sum(a.x_var * (a.n - 1) for a in arms)
    return cov / var


def adjusted_estimates(arms: list[Moments]) -> list[Estimate]:
    """Each arm's CUPED-adjusted mean of y and the variance of that mean, with one θ for all arms."""
    slope = theta(arms)
    total_n = sum(a.n for a in arms)
    pooled_x = sum(a.x_sum for a in arms) / total_n
    out = []
    for a in arms:
        unit = a.y_var + slope**2 * a.x_var - 2 * slope * a.xy_cov
        out.append(Estimate(a.y_mean - slope * (a.x_mean - pooled_x), unit / a.n, a.n, unit))
    return out
