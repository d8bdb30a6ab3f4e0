"""Look ahead: what the canary would do at 100 %, and whether it is getting worse right now.

* **Burn-rate projection.** At 5 % a canary that fails 3 % of requests barely dents the service's
  SLO; at 100 % it would burn a 0.1 % error budget 30 times too fast. Before a stage expands, the
  canary's error rate is bounded from below (exact Clopper-Pearson bound: this test is made once,
  at the moment of expanding, so a fixed-sample bound is valid) and projected to full traffic; if
  it would burn the budget at ``burnRateLimit`` (14.4: the SRE workbook's page threshold for a
  one-hour window) or faster, the judge rolls back instead of expanding.
* **Rising trend.** A canary that degrades over minutes (a leak, a filling queue) looks fine on
  average for a while. A weighted Cochran-Armitage trend statistic on the attribution residuals
  (canary bad events minus their expected share under "no change", against time) flags a rise
  before the level test crosses its bar. A trend only *delays* expansion, it never rolls back by
  itself, so watching it costs no false rollbacks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.special import betaincinv

from rollwise.analysis.attribution import WindowCounts
from rollwise.core.evidence import BurnProjection

#: z-score of the trend statistic above which a stage may not expand.
TREND_Z = 3.0
#: Bad events a stage needs before its trend is read at all.
TREND_MIN_EVENTS = 10.0


@dataclass(frozen=True)
class TrendState:
    """Running sums of the trend statistic for one stage (time in seconds since the stage began)."""

    residual: float = 0.0  # sum of r_t = canary bad - expected
    time_residual: float = 0.0  # sum of t * r_t
    variance: float = 0.0  # sum of v_t = k_t * s_t * (1 - s_t)
    time_variance: float = 0.0  # sum of t * v_t
    time2_variance: float = 0.0  # sum of t^2 * v_t
    events: float = 0.0

    def update(self, counts: WindowCounts, t: float) -> TrendState:
        if not counts.informative:
            return self
        share = counts.share
        events = counts.canary_bad + counts.baseline_bad
        residual = counts.canary_bad - events * share
        variance = events * share * (1.0 - share)
        return TrendState(
            self.residual + residual,
            self.time_residual + t * residual,
            self.variance + variance,
            self.time_variance + t * variance,
            self.time2_variance + t * t * variance,
            self.events + events,
        )

    def z(self) -> float:
        """Standardised slope of the canary's excess share of bad events over time."""
        if self.variance <= 0 or self.events < TREND_MIN_EVENTS:
            return 0.0
        centre = self.time_variance / self.variance
        spread = self.time2_variance - centre * self.time_variance
        if spread <= 1e-12:
            return 0.0
        return (self.time_residual - centre * self.residual) / math.sqrt(spread)

    def rising(self) -> bool:
        return self.z() >= TREND_Z


def clopper_pearson_lower(successes: int, trials: int, alpha: float) -> float:
    """The exact one-sided lower bound at ``alpha``: the ``alpha`` quantile of Beta(k, n - k + 1).

    The same number as ``scipy.stats.binomtest(k, n).proportion_ci(1 - 2 alpha, "exact").low``,
    without its root search (this runs at every window of every stage).
    """
    if successes <= 0:
        return 0.0
    return float(betaincinv(successes, trials - successes + 1, alpha))


def project_burn_rate(
    errors: int, requests: int, budget: float, alpha: float, limit: float
) -> BurnProjection:
    """Lower confidence bound of the canary's error rate, as a burn rate of ``budget`` at 100 %."""
    if requests <= 0 or budget <= 0:
        return BurnProjection(test="burn-rate-projection", lower=0.0, burnRate=0.0, limit=limit, fires=False)
    lower = clopper_pearson_lower(errors, requests, alpha)
    burn = lower / budget
    return BurnProjection(
        test="burn-rate-projection",
        errors=errors,
        requests=requests,
        alpha=alpha,
        budget=budget,
        lower=lower,
        burnRate=burn,
        limit=limit,
        fires=burn >= limit,
    )
