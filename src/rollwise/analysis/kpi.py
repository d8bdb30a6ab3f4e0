"""Business KPIs (conversion, drop-off): non-inferiority of the canary's success ratio.

A KPI is a ratio of two event counters (``checkout`` per ``visit``). The canary is *inferior*
when its ratio is below the baseline's by more than the tolerated relative drop; it is
*non-inferior* once an anytime-valid confidence sequence for the ratio of ratios lies above
``1 - tolerance - concern``. Both come from the attribution likelihood over a fine grid of
ratios near 1 (KPI effects are a few percent), so conversions are attributed to the canary in
proportion to its share of visits in each window.

A KPI comparison is only meaningful when both versions get the traffic they were meant to get.
Before trusting it, a sample-ratio-mismatch (SRM) check tests whether the canary's share of
*visits* matches its share of requests; a mismatch means a routing or logging bug, so the metric
becomes inconclusive (ask a human) rather than a reason to roll back or to promote.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rollwise.analysis.attribution import (
    KPI_GRID,
    AttributionState,
    SequentialErrorTest,
    WindowCounts,
    canary_probability,
)
from rollwise.core.model import Window
from rollwise.spec.models import MetricSpec

#: Relative drop worth ruling out before a stage may end, when the metric states no minEffect.
DEFAULT_KPI_CONCERN = 0.10


def kpi_test(metric: MetricSpec, alpha: float) -> SequentialErrorTest:
    return SequentialErrorTest(
        alpha=alpha,
        tolerance=metric.maxIncrease or 0.0,
        min_effect=metric.minEffect,
        concern=metric.minEffect or DEFAULT_KPI_CONCERN,
        relative=True,
        lower_is_worse=metric.higherIsBetter is not False,
        grid=KPI_GRID,
    )


def kpi_counts(metric: MetricSpec, window: Window) -> WindowCounts | None:
    """Visits and conversions per version (None when a side is missing or saw no visits)."""
    assert metric.numerator and metric.denominator
    canary, baseline = window.canary, window.baseline
    if canary is None or baseline is None:
        return None
    canary_trials = canary.kpis.get(metric.denominator, 0.0)
    baseline_trials = baseline.kpis.get(metric.denominator, 0.0)
    if canary_trials <= 0 and baseline_trials <= 0:
        return None
    return WindowCounts(
        canary_trials=canary_trials,
        baseline_trials=baseline_trials,
        canary_bad=canary.kpis.get(metric.numerator, 0.0),
        baseline_bad=baseline.kpis.get(metric.numerator, 0.0),
    )


def non_inferior(test: SequentialErrorTest, state: AttributionState) -> tuple[bool, tuple[float, float]]:
    """Whether the confidence sequence rules out a drop of tolerance + concern, and the sequence."""
    low, high = test.confidence_interval(state, test.alpha)
    bar = test.ratio_for(test.tolerance + test.concern, test.baseline_rate(state))
    decided = state.windows > 0 and (low > bar if test.lower_is_worse else high < bar)
    return decided, (low, high)


# ------------------------------------------------------------------ sample-ratio mismatch


@dataclass
class SampleRatioState:
    """Log-likelihood of the canary's share of visits at each ratio to its share of requests."""

    loglik: np.ndarray

    @classmethod
    def empty(cls) -> SampleRatioState:
        return cls(np.zeros(KPI_GRID.size))

    def to_dict(self) -> dict[str, Any]:
        return {"loglik": [round(float(x), 9) for x in self.loglik]}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SampleRatioState:
        if not data or len(data.get("loglik", [])) != KPI_GRID.size:
            return cls.empty()
        return cls(np.asarray(data["loglik"], dtype=float))


_CENTRE = int(np.argmin(np.abs(np.log(KPI_GRID))))


def srm_update(state: SampleRatioState, window: Window, denominator: str) -> SampleRatioState:
    canary, baseline = window.canary, window.baseline
    if canary is None or baseline is None or canary.requests <= 0 or baseline.requests <= 0:
        return state
    visits_c = canary.kpis.get(denominator, 0.0)
    visits_b = baseline.kpis.get(denominator, 0.0)
    if visits_c + visits_b <= 0:
        return state
    share = canary.requests / (canary.requests + baseline.requests)
    theta = canary_probability(KPI_GRID, share)
    return SampleRatioState(state.loglik + visits_c * np.log(theta) + visits_b * np.log1p(-theta))


def srm_e_value(state: SampleRatioState) -> float:
    """Two-sided mixture e-value against "visits split like requests" (uniform over the grid)."""
    terms = state.loglik - state.loglik[_CENTRE]
    top = float(terms.max())
    return math.exp(min(700.0, top + math.log(float(np.exp(terms - top).mean()))))
