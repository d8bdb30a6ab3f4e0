"""Which route regressed: the canary's and the baseline's counts per ``http.route``, side by side.

The split comes from the windows' ``VersionStats.extra`` (``route.requests:<route>``, ``route.errors:…``,
``route.latency_sum_ms:…``), which the ``otlp`` metric source fills from the spans' ``http.route``; other
sources leave it empty and the RCA says nothing per route. A route is named as regressed when its
canary error rate is above the baseline's by Fisher's exact test, one-sided p at most ``ERROR_P`` (exact,
so a fast rollback's few requests on the failing route still name it: 11 of 22 failed against 0 of 97 is
p ≈ 1e-9), or its canary mean latency is at least ``LATENCY_RATIO`` times the baseline's and
``LATENCY_MIN_MS`` slower, over at least ``MIN_REQUESTS`` canary requests. The two-proportion z (pooled)
is shown beside, from ``MIN_REQUESTS`` canary requests on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.stats import fisher_exact

from rollwise.core.model import VersionStats, Window
from rollwise.telemetry.aggregate import ROUTE_KEYS

ERROR_P = 0.001
LATENCY_RATIO = 1.5
LATENCY_MIN_MS = 10.0
MIN_REQUESTS = 30
SHOWN = 10
_KEYS = {key: index for index, key in enumerate(ROUTE_KEYS)}  # requests, errors, latency_sum_ms


@dataclass(frozen=True)
class RouteSplit:
    route: str
    canary_requests: int
    canary_errors: int
    baseline_requests: int
    baseline_errors: int
    canary_mean_ms: float | None
    baseline_mean_ms: float | None
    error_z: float | None
    regressed: str | None  # "errors", "latency" or None
    error_p: float | None = None  # Fisher's exact, one-sided: the canary fails more often

    @property
    def excess_errors(self) -> float:
        rate = self.baseline_errors / self.baseline_requests if self.baseline_requests else 0.0
        return self.canary_errors - self.canary_requests * rate

    def text(self) -> str:
        line = (f"{self.route}: canary {_rate(self.canary_errors, self.canary_requests)} errors vs baseline "
                f"{_rate(self.baseline_errors, self.baseline_requests)}")
        if self.canary_mean_ms is not None and self.baseline_mean_ms is not None:
            line += f"; mean {self.canary_mean_ms:.0f} ms vs {self.baseline_mean_ms:.0f} ms"
        if self.error_z is not None:
            line += f"; z {self.error_z:.1f}"
        if self.error_p is not None and self.error_p <= ERROR_P:
            line += f"; p {self.error_p:.1g}"
        return line + (f"  <- {self.regressed} regressed here" if self.regressed else "")


def route_splits(windows: Sequence[Window]) -> list[RouteSplit]:
    """Per route, canary vs baseline over ``windows``: regressed routes first, worst first (at most ``SHOWN``)."""
    canary = _per_route(VersionStats.merge([w.canary for w in windows if w.canary is not None]))
    baseline = _per_route(VersionStats.merge([w.baseline for w in windows if w.baseline is not None]))
    splits = [_split(route, counts, baseline.get(route, [0.0, 0.0, 0.0])) for route, counts in canary.items()
              if counts[0] > 0]
    splits.sort(key=lambda s: (s.regressed is None, -s.excess_errors, s.route))
    return splits[:SHOWN]


def _per_route(stats: VersionStats) -> dict[str, list[float]]:
    routes: dict[str, list[float]] = {}
    for key, value in stats.extra.items():
        for prefix, index in _KEYS.items():
            if key.startswith(prefix):
                routes.setdefault(key[len(prefix):], [0.0, 0.0, 0.0])[index] += value
    return routes


def _split(route: str, canary: list[float], baseline: list[float]) -> RouteSplit:
    nc, ec, lc = int(canary[0]), int(canary[1]), canary[2]
    nb, eb, lb = int(baseline[0]), int(baseline[1]), baseline[2]
    z = _two_proportion_z(ec, nc, eb, nb)
    p = _fisher_p(ec, nc, eb, nb)
    mean_c, mean_b = (lc / nc if nc else None), (lb / nb if nb else None)
    regressed = None
    if p is not None and p <= ERROR_P:
        regressed = "errors"
    elif (nc >= MIN_REQUESTS and mean_c is not None and mean_b is not None
          and mean_c >= LATENCY_RATIO * mean_b and mean_c - mean_b >= LATENCY_MIN_MS):
        regressed = "latency"
    return RouteSplit(route, nc, ec, nb, eb, mean_c, mean_b, z, regressed, p)


def _fisher_p(ec: int, nc: int, eb: int, nb: int) -> float | None:
    """One-sided p that the canary's error rate is no higher than the baseline's; None when it is not higher."""
    if nc == 0 or nb == 0 or ec * nb <= eb * nc:
        return None
    return float(fisher_exact([[ec, nc - ec], [eb, nb - eb]], alternative="greater").pvalue)


def _two_proportion_z(ec: int, nc: int, eb: int, nb: int) -> float | None:
    if nc < MIN_REQUESTS or nb == 0:
        return None
    pooled = (ec + eb) / (nc + nb)
    variance = pooled * (1 - pooled) * (1 / nc + 1 / nb)
    if variance <= 0:
        return None
    return (ec / nc - eb / nb) / math.sqrt(variance)


def _rate(bad: int, total: int) -> str:
    return f"{100 * bad / total:.2f}% ({bad}/{total})" if total else "-"
