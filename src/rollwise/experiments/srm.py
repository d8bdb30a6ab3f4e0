"""A sequential sample-ratio-mismatch (SRM) check that may be read after every batch.

If a 50/50 experiment serves 51/49, something in assignment or logging is broken (a redirect that
loses some users, a bot filter on one arm), and every estimate is suspect: the readout halts until a
person looks. The check is the Dirichlet-multinomial mixture e-value of Lindon & Malek ("Anytime-valid
inference for multinomial count data", 2022): under the planned allocation p,

    E_n = [Γ(A) / Γ(A + n)] · Π Γ(a_i + n_i) / Γ(a_i)  /  Π p_i^{n_i},      a_i = A · p_i,

is a nonnegative martingale with expectation 1, so by Ville's inequality P(ever E_n ≥ 1/α) ≤ α:
reading it after every batch flags a correct allocation with probability at most α. ``A`` (the prior
concentration) sets which mismatches it is quickest to find: a large A centres the mixture near p,
good for the small mismatches that matter here (a percent or two).

``predicted_n`` is the sample size at which a mismatch is expected to be flagged, from the Laplace
approximation of log E_n (n·KL(q‖p) − (k−1)/2·log n + constants); the benchmark checks it against
simulated detection times.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.optimize import brentq
from scipy.special import gammaln

from rollwise.experiments.stats import Num

#: Prior concentration of the Dirichlet mixture (A = Σ a_i).
DEFAULT_CONCENTRATION = 1_000.0


def log_e_value(counts: Num, allocation: Sequence[float], concentration: float = DEFAULT_CONCENTRATION) -> Num:
    """log E_n for counts per arm (last axis) against the planned allocation (shares summing to 1)."""
    counts = np.asarray(counts, dtype=float)
    p = np.asarray(allocation, dtype=float)
    p = p / p.sum()
    a = concentration * p
    n = counts.sum(axis=-1)
    log_mixture = gammaln(concentration) - gammaln(concentration + n) + (gammaln(a + counts) - gammaln(a)).sum(axis=-1)
    log_null = (counts * np.log(p)).sum(axis=-1)
    return log_mixture - log_null


def mismatch(counts: Num, allocation: Sequence[float], alpha: float,
             concentration: float = DEFAULT_CONCENTRATION) -> Num:
    """Whether the counts show a sample-ratio mismatch at level alpha (anytime-valid)."""
    return log_e_value(counts, allocation, concentration) >= math.log(1 / alpha)


def _kl(q: np.ndarray, p: np.ndarray) -> float:
    return float(np.sum(q * np.log(q / p)))


def predicted_log_e(n: float, served: Sequence[float], allocation: Sequence[float],
                    concentration: float = DEFAULT_CONCENTRATION) -> float:
    """The Laplace approximation of log E_n when the arms really get shares ``served``."""
    q = np.asarray(served, dtype=float) / sum(served)
    p = np.asarray(allocation, dtype=float) / sum(allocation)
    a = concentration * p
    k = len(q)
    log_prior = float(gammaln(concentration) - gammaln(a).sum() + ((a - 1) * np.log(q)).sum())
    return n * _kl(q, p) + log_prior + (k - 1) / 2 * math.log(2 * math.pi / n) + 0.5 * float(np.log(q).sum())


def predicted_n(served: Sequence[float], allocation: Sequence[float], alpha: float,
                concentration: float = DEFAULT_CONCENTRATION) -> float:
    """Subjects at which a mismatch of ``served`` against ``allocation`` is expected to be flagged."""
    goal = math.log(1 / alpha)
    low, high = 10.0, 1e12
    if predicted_log_e(high, served, allocation, concentration) < goal:
        return math.inf
    return float(brentq(lambda n: predicted_log_e(n, served, allocation, concentration) - goal, low, high))
