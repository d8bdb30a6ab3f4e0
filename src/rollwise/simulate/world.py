"""A simulated service with a stable and a canary version behind a simulated router.

The world plays both edges of the engine: it is the TrafficRouter (it remembers the weights) and
the MetricSource (it draws each window's requests, errors, latency histogram and KPI counts from
the weights that were in force). With ``regions`` it is a fleet of regions: each region's traffic
follows the route's weight there (``RouteState.weight_in``), a fault can be confined to one region
(``canary_in``), and a window asked for some regions (``WindowQuery.regions``) counts only theirs,
as a per-region metric source does. It also keeps the ground truth the engine never sees, such as how
many users a bad canary hurt, so benchmarks can score decisions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr, ndtri

from rollwise.core.model import RouteState, VersionStats, Window, WindowQuery

# Envoy-like histogram bounds in ms (finer than Envoy's defaults, as rollwise configures Envoy).
BUCKETS_MS: tuple[float, ...] = (
    0.5, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 75, 100, 125, 150, 200, 250,
    300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 30000, 60000, math.inf,
)
_Z99 = float(ndtri(0.99))
_FINITE_EDGES = np.log(np.array([b for b in BUCKETS_MS if math.isfinite(b)]))


@dataclass
class Behaviour:
    """How one version behaves; a regression can start at ``change_at`` or drift over time."""

    error_rate: float = 0.001
    latency_p50_ms: float = 20.0
    latency_p99_ms: float = 100.0
    conversion: float = 0.05
    change_at: float | None = None  # seconds after the simulation starts
    error_rate_after: float | None = None
    latency_p99_after_ms: float | None = None
    conversion_after: float | None = None
    error_drift_per_hour: float = 0.0

    def at(self, t: float) -> tuple[float, float, float, float]:
        """(error rate, p50, p99, conversion) at simulated time ``t``."""
        error, p99, conversion = self.error_rate, self.latency_p99_ms, self.conversion
        if self.change_at is not None and t >= self.change_at:
            error = self.error_rate_after if self.error_rate_after is not None else error
            p99 = self.latency_p99_after_ms if self.latency_p99_after_ms is not None else p99
            conversion = self.conversion_after if self.conversion_after is not None else conversion
        error = min(1.0, max(0.0, error + self.error_drift_per_hour * t / 3600.0))
        return error, self.latency_p50_ms, max(p99, self.latency_p50_ms * 1.01), conversion


@dataclass
class TrafficProfile:
    rps: float = 200.0
    diurnal_amplitude: float = 0.0  # 0.3 = +-30% over a day
    burst_probability: float = 0.0  # chance a window is a burst
    burst_factor: float = 5.0
    burst_error_rate: float = 0.0  # extra errors during bursts, on every version
    outages: list[tuple[float, float]] = field(default_factory=list)  # metrics missing in [a, b)

    def rate_at(self, t: float) -> float:
        return self.rps * (1.0 + self.diurnal_amplitude * math.sin(2 * math.pi * t / 86400.0))


@dataclass
class GroundTruth:
    canary_requests: int = 0
    canary_errors: int = 0
    canary_bad_requests: int = 0
    baseline_requests: int = 0
    shadow_mismatches: int = 0


class SimulatedWorld:
    def __init__(
        self,
        baseline: Behaviour,
        canary: Behaviour,
        profile: TrafficProfile | None = None,
        seed: int = 0,
        latency_slo_ms: float | None = None,
        t0: float = 0.0,
        regions: dict[str, float] | None = None,
        canary_in: dict[str, Behaviour] | None = None,
    ):
        self.baseline = baseline
        self.canary = canary
        total = sum((regions or {}).values())
        self.regions = {name: share / total for name, share in regions.items()} if regions and total > 0 else None
        self.canary_in = dict(canary_in or {})
        self.profile = profile or TrafficProfile()
        self.rng = np.random.default_rng(seed)
        self._history_rng = np.random.default_rng([seed, 1])  # its own stream: windows stay as they were
        self.latency_slo_ms = latency_slo_ms if latency_slo_ms is not None else baseline.latency_p99_ms
        self.t0 = t0
        self.routes: dict[str, RouteState] = {}
        self.truth = GroundTruth()
        self.applied: list[tuple[str, RouteState]] = []

    # TrafficRouter
    def apply(self, rollout: str, route: RouteState) -> None:
        self.routes[rollout] = route
        self.applied.append((rollout, route))

    # MetricSource
    def collect(self, query: WindowQuery) -> Window:
        if self.regions is not None:
            return self._collect_regions(query, self.regions)
        route = self.routes.get(query.rollout)
        seconds = max(0.0, query.end - query.start)
        t = query.start - self.t0
        total = int(self.rng.poisson(self.profile.rate_at(t) * seconds)) if seconds else 0
        burst = self.profile.burst_probability > 0 and self.rng.random() < self.profile.burst_probability
        if burst:
            total = int(total * self.profile.burst_factor)
        share = (route.canary_weight / 100.0) if route is not None and route.canary else 0.0
        canary_n = int(self.rng.binomial(total, share)) if share > 0 else 0
        baseline_n = total - canary_n
        mirrored = 0
        if route is not None and route.mirror_to and route.mirror_percent > 0:
            mirrored = int(self.rng.binomial(total, route.mirror_percent / 100.0))
        extra_error = self.profile.burst_error_rate if burst else 0.0
        baseline_stats = self._draw(self.baseline, baseline_n, t, extra_error, truth=False)
        canary_stats = self._draw(self.canary, canary_n + mirrored, t, extra_error, truth=canary_n > 0)
        if mirrored:
            mismatches = int(self.rng.binomial(mirrored, min(1.0, self.canary.at(t)[0])))
            self.truth.shadow_mismatches += mismatches
            canary_stats = VersionStats(
                requests=canary_stats.requests, errors=canary_stats.errors,
                latency_buckets=canary_stats.latency_buckets, latency_sum_ms=canary_stats.latency_sum_ms,
                kpis=canary_stats.kpis, extra={"compared": float(mirrored), "mismatches": float(mismatches)},
            )
        self.truth.baseline_requests += baseline_n
        if any(a <= t < b for a, b in self.profile.outages):
            return Window(query.start, query.end, None, None, cursor=query.cursor)
        return Window(query.start, query.end, baseline_stats, canary_stats, cursor=query.cursor)

    def _collect_regions(self, query: WindowQuery, regions: dict[str, float]) -> Window:
        """A window summed over the asked regions, each drawn at its own canary weight and behaviour."""
        route = self.routes.get(query.rollout)
        seconds = max(0.0, query.end - query.start)
        t = query.start - self.t0
        baseline_parts, canary_parts = [], []
        for region, share in regions.items():
            if query.regions and region not in query.regions:
                continue
            total = int(self.rng.poisson(self.profile.rate_at(t) * share * seconds)) if seconds else 0
            weight = route.weight_in(region) / 100.0 if route is not None and route.canary else 0.0
            canary_n = int(self.rng.binomial(total, weight)) if weight > 0 else 0
            self.truth.baseline_requests += total - canary_n
            baseline_parts.append(self._draw(self.baseline, total - canary_n, t, 0.0, truth=False))
            canary_parts.append(self._draw(self.canary_in.get(region, self.canary), canary_n, t, 0.0,
                                           truth=canary_n > 0))
        if any(a <= t < b for a, b in self.profile.outages):
            return Window(query.start, query.end, None, None, cursor=query.cursor)
        return Window(query.start, query.end, VersionStats.merge(baseline_parts), VersionStats.merge(canary_parts),
                      cursor=query.cursor)

    # BaselineHistory
    def baseline_history(self, query: WindowQuery) -> VersionStats | None:
        """The stable version alone at full traffic before the rollout (simulated time may be < 0)."""
        seconds = max(0.0, query.end - query.start)
        if seconds <= 0:
            return None
        t = query.start - self.t0
        if any(a < t + seconds and t < b for a, b in self.profile.outages):
            return None
        rng, self.rng = self.rng, self._history_rng
        try:
            total = int(self.rng.poisson(self.profile.rate_at(t) * seconds))
            return self._draw(self.baseline, total, t, 0.0, truth=False)
        finally:
            self.rng = rng

    def _draw(self, behaviour: Behaviour, n: int, t: float, extra_error: float, truth: bool) -> VersionStats:
        error_rate, p50, p99, conversion = behaviour.at(t)
        error_rate = min(1.0, error_rate + extra_error)
        if n <= 0:
            return VersionStats(latency_buckets=tuple((b, 0) for b in BUCKETS_MS))
        errors = int(self.rng.binomial(n, error_rate))
        mu = math.log(p50)
        sigma = max(1e-6, (math.log(p99) - mu) / _Z99)
        cdf = ndtr((_FINITE_EDGES - mu) / sigma)
        probs = np.diff(np.concatenate(([0.0], cdf, [1.0])))
        counts = self.rng.multinomial(n, np.clip(probs, 0, None) / probs.sum())
        cumulative = np.cumsum(counts)
        buckets = tuple((float(b), int(c)) for b, c in zip(BUCKETS_MS, cumulative, strict=True))
        visits = n
        checkouts = int(self.rng.binomial(visits, conversion))
        if truth:
            p_slow = float(1.0 - ndtr((math.log(self.latency_slo_ms) - mu) / sigma))
            slow_ok = int(self.rng.binomial(n - errors, p_slow)) if n > errors else 0
            self.truth.canary_requests += n
            self.truth.canary_errors += errors
            self.truth.canary_bad_requests += errors + slow_ok
        return VersionStats(
            requests=n,
            errors=errors,
            latency_buckets=buckets,
            latency_sum_ms=float(n * math.exp(mu + sigma * sigma / 2)),
            kpis={"visit": float(visits), "checkout": float(checkouts)},
        )
