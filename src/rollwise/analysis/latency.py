"""Latency as counts: requests slower than the baseline's quantile, frozen when the stage starts.

Comparing two p99s needs a test for quantiles and huge samples; comparing *how many* requests of
each version are slower than one fixed bar is the attribution test again, with all its guarantees.
The bar is the baseline's ``quantile`` (p99 by default) measured on the first window(s) that hold
enough baseline requests, and it is put on a histogram bucket bound so the counts above it are exact.
It is then frozen (and carried to later stages and runs), and the windows used to pick it are left
out of the test so that choosing the bar cannot bias it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rollwise.analysis.attribution import WindowCounts
from rollwise.core.model import VersionStats, Window

#: Expected baseline exceedances needed before the quantile is frozen (1000 requests for a p99).
MIN_EXCEEDANCES = 10.0


def baseline_needed(quantile: float) -> float:
    return MIN_EXCEEDANCES / (1.0 - quantile)


def frozen_bound(baseline: VersionStats, quantile: float) -> float | None:
    """The histogram bucket bound nearest (in log scale) to the baseline's ``quantile``.

    The bar is a bucket bound because counts above a bound are exact. It is the *nearest* bound to
    the interpolated quantile rather than the bucket's upper edge: with p99 = 100 ms and a bound
    at 100 ms, the upper edge flips between 100 and 125 ms with sampling noise, and a bar at 125 ms
    sees a quarter fewer slow requests per request (less information, later rollbacks). Which bar
    is chosen never affects validity: the windows that chose it are left out of the test.
    """
    if not baseline.latency_buckets:
        return None
    total = baseline.latency_buckets[-1][1]
    if total <= 0:
        return None
    finite = [(b, c) for b, c in baseline.latency_buckets if math.isfinite(b)]
    if not finite or finite[-1][1] < quantile * total:
        return None  # the quantile lies in the overflow bucket: no bound to freeze on
    estimate = baseline.quantile(quantile)
    candidates = [b for b, _ in finite if b > 0]
    if estimate is None or not candidates:
        return None
    target = math.log(max(estimate, 1e-9))
    return min(candidates, key=lambda b: abs(math.log(b) - target))


def freeze_threshold(windows: Sequence[Window], quantile: float) -> tuple[float | None, int]:
    """(threshold in ms, number of leading windows used to choose it), or (None, n) if not yet."""
    pooled: dict[float, int] = {}
    for index, window in enumerate(windows):
        if window.baseline is None or not window.baseline.latency_buckets:
            continue
        for bound, cumulative in window.baseline.latency_buckets:
            pooled[bound] = pooled.get(bound, 0) + cumulative
        merged = VersionStats(latency_buckets=tuple(sorted(pooled.items())))
        if merged.latency_buckets[-1][1] >= baseline_needed(quantile):
            return frozen_bound(merged, quantile), index + 1
    return None, len(windows)


def exceedance_counts(window: Window, threshold_ms: float) -> WindowCounts | None:
    """Requests per version and how many were slower than ``threshold_ms`` (None: no histogram)."""
    canary, baseline = window.canary, window.baseline
    if canary is None or baseline is None or not canary.latency_buckets or not baseline.latency_buckets:
        return None
    return WindowCounts(
        canary_trials=float(canary.latency_buckets[-1][1]),
        baseline_trials=float(baseline.latency_buckets[-1][1]),
        canary_bad=float(canary.count_above(threshold_ms)),
        baseline_bad=float(baseline.count_above(threshold_ms)),
    )
