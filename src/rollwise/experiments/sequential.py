"""Anytime-valid confidence sequences: intervals that may be read after every batch of events.

A fixed-horizon interval covers the truth with 95 % at *one* pre-registered sample size; read after
every batch and stopped at the first "significant" look, its false-positive rate climbs far past 5 %.
A confidence sequence covers the truth at *all* sample sizes at once, so any look, and stopping at
any look, keeps the error ≤ alpha.

We use the asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas
("Time-uniform central limit theory and asymptotic confidence sequences", 2023), the two-sided
normal-mixture boundary of Howard et al. (2021) applied to the CLT approximation of the estimator:

    estimate ± σ̂ · sqrt( 2 (n ρ² + 1) / (n² ρ²) · log( sqrt(n ρ² + 1) / α ) )

where σ̂² is the variance per subject (``Estimate.unit_variance``; for a difference, the estimator's
variance times n) and ρ tunes where the sequence is tightest: ``rho_for(n*, α)`` makes it tightest
at n* subjects, which is the knob GrowthBook calls the sequential tuning parameter. The bound is
the same machinery as the judge's mixture SPRT (``analysis/``), written for means rather than for a
canary's attributed error counts.
"""

from __future__ import annotations

import math

import numpy as np

from rollwise.experiments.stats import Comparison, Num

#: Subjects at which the sequence is tightest unless the experiment says otherwise (GrowthBook's default).
DEFAULT_TUNING_N = 5_000.0


def rho_for(tuning_n: float, alpha: float) -> float:
    """The mixture's ρ that minimises the boundary's width at ``tuning_n`` subjects."""
    log_term = -2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)
    return math.sqrt(log_term / tuning_n)


def boundary(n: Num, alpha: float, tuning_n: float = DEFAULT_TUNING_N) -> Num:
    """The multiplier of σ̂ at n subjects: width = σ̂ · boundary(n)."""
    rho2 = rho_for(tuning_n, alpha) ** 2
    n = np.asarray(n, dtype=float)
    return np.sqrt(2 * (n * rho2 + 1) / (n * n * rho2) * np.log(np.sqrt(n * rho2 + 1) / alpha))


def cs_halfwidth(variance: Num, n: Num, alpha: float, tuning_n: float = DEFAULT_TUNING_N) -> Num:
    """Half-width of the confidence sequence for an estimate with squared standard error ``variance``
    from ``n`` subjects (the per-subject variance is ``variance * n``)."""
    return np.sqrt(variance * n) * boundary(n, alpha, tuning_n)


def relative_cs(comparison: Comparison, alpha: float, tuning_n: float = DEFAULT_TUNING_N) -> tuple[Num, Num]:
    """The confidence sequence for relative lift at this look: (low, high)."""
    half = cs_halfwidth(comparison.relative_variance, comparison.n, alpha, tuning_n)
    return comparison.relative - half, comparison.relative + half


def absolute_cs(comparison: Comparison, alpha: float, tuning_n: float = DEFAULT_TUNING_N) -> tuple[Num, Num]:
    """The confidence sequence for the absolute difference at this look: (low, high)."""
    half = cs_halfwidth(comparison.absolute_variance, comparison.n, alpha, tuning_n)
    return comparison.absolute - half, comparison.absolute + half
