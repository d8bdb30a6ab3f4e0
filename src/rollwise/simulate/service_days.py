"""Simulated days of one service's metrics, with releases and injected post-release regressions.

The watch's benchmark (``bench/watch.py``) scores its detector on these series, and the attribution
benchmark reuses them: each `ServiceDays` carries the ground truth (release times, which one regressed,
the onset and kind) that the detector never sees. Pure: a seed in, arrays out.

What one scrape (every ``interval`` seconds) reports, per metric:

* ``requests``: requests per second; diurnal (peak in the afternoon, a quiet night), weekends lower,
  a slowly wandering load level, Poisson counts.
* ``error_rate``: errors / requests (binomial), a base rate per service, rare short error bursts.
* ``latency_p99``: ms; rises with load, noisier when few requests, rare heavy-tailed stalls (GC, a slow
  dependency), a short warm-up bump after every release (cold caches).
* ``memory``: MB, the replicas' average; a little higher with load (a rolling release keeps it).
* ``kpi``: conversion rate of the scrape's requests (binomial).

Regressions start at a release: ``errors`` (+0.5 percentage point), ``latency`` (p99 x 1.3),
``memory_leak`` (+``leak_per_hour`` of the base per hour, for hours) and ``kpi`` (x 0.95).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.signal import lfilter

RegressionKind = Literal["errors", "latency", "memory_leak", "kpi"]
METRICS: tuple[str, ...] = ("requests", "error_rate", "latency_p99", "memory", "kpi")
DIRECTION: dict[str, Literal["up", "down", "both"]] = {
    "requests": "both", "error_rate": "up", "latency_p99": "up", "memory": "up", "kpi": "down"}
"""Which way each metric goes wrong (a fall in requests or a rise both matter)."""
METRIC_OF: dict[str, str] = {"errors": "error_rate", "latency": "latency_p99", "memory_leak": "memory",
                             "kpi": "kpi"}
"""The metric each regression kind shows in."""
DAY = 86400.0
EPOCH_MONDAY = 1_700_438_400.0  # 2023-11-20 00:00 UTC, a Monday


@dataclass(frozen=True)
class Regression:
    """What goes wrong with a release, from ``onset`` (epoch seconds)."""

    kind: RegressionKind
    onset: float
    error_step: float = 0.005
    latency_factor: float = 1.3
    leak_per_hour: float = 0.10
    kpi_factor: float = 0.95


@dataclass(frozen=True)
class ServiceDays:
    """One service's series and the ground truth behind them."""

    name: str
    timestamps: np.ndarray
    series: dict[str, np.ndarray]
    releases: tuple[float, ...]
    regression: Regression | None = None
    profile: dict[str, float] = field(default_factory=dict)
    blips: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    """Where a healthy service had a transient blip (an error burst, a latency stall): real but brief
    anomalies that no change caused."""


def simulate_service(seed: int, *, days: float = 7.0, interval: float = 15.0, releases: int = 3,
                     regress: RegressionKind | None = None, start: float = EPOCH_MONDAY,
                     earliest_release_day: float = 1.0) -> ServiceDays:
    """A service's ``days`` of scrapes with ``releases`` releases at random times after the first day; with
    ``regress``, the last release brings that regression."""
    rng = np.random.default_rng(seed)
    t = start + np.arange(0.0, days * DAY, interval)
    when = np.sort(rng.uniform(start + earliest_release_day * DAY, t[-1] - 0.25 * DAY, size=max(releases, 1)))
    release_times = tuple(float(x) for x in when[:releases]) if releases else ()
    regression = Regression(regress, release_times[-1]) if regress and release_times else None
    profile = {"rps": float(np.exp(rng.uniform(np.log(20), np.log(400)))),
               "error_rate": float(rng.uniform(0.001, 0.01)), "p99_ms": float(rng.uniform(80, 400)),
               "memory_mb": float(rng.uniform(200, 2000)), "conversion": float(rng.uniform(0.03, 0.12))}
    rps = _traffic(rng, t, profile["rps"])
    per_day = DAY / interval
    error_bursts = _bursts(rng, len(t), 0.5, per_day, 3)
    stalls = _bursts(rng, len(t), 1.0, per_day, 2)
    count = rng.poisson(rps * interval).astype(float)
    series = {"requests": count / interval,
              "error_rate": _errors(rng, t, count, profile["error_rate"], error_bursts, regression),
              "latency_p99": _latency(rng, t, count, rps / profile["rps"], profile["p99_ms"], stalls,
                                      release_times, regression),
              "memory": _memory(rng, t, rps / profile["rps"], profile["memory_mb"], regression),
              "kpi": _kpi(rng, count, profile["conversion"], t, regression)}
    return ServiceDays(f"svc-{seed}", t, series, release_times, regression, profile,
                       (error_bursts + stalls) > 0)


def _traffic(rng: np.random.Generator, t: np.ndarray, base: float) -> np.ndarray:
    hour = (t % DAY) / 3600.0
    diurnal = 1.0 + 0.55 * np.sin(2 * np.pi * (hour - 8.0) / 24.0) + 0.15 * np.sin(4 * np.pi * (hour - 5.0) / 24.0)
    weekday = ((t - EPOCH_MONDAY) // DAY).astype(int) % 7
    weekly = np.where(weekday >= 5, 0.7, 1.0)
    wander = np.exp(_ar1(rng, len(t), rho=0.999, sd=0.1))
    return np.maximum(base * diurnal * weekly * wander, 0.05 * base)


def _ar1(rng: np.random.Generator, n: int, *, rho: float, sd: float) -> np.ndarray:
    """A stationary AR(1) path with marginal standard deviation ``sd`` (slow wandering)."""
    shocks = rng.normal(0.0, sd * np.sqrt(1 - rho * rho), n)
    shocks[0] = rng.normal(0.0, sd)
    return np.asarray(lfilter([1.0], [1.0, -rho], shocks))


def _bursts(rng: np.random.Generator, n: int, per_day: float, points_per_day: float, length: int) -> np.ndarray:
    """A 0/1 mask of short incidents that happen to healthy services too (``per_day`` of them)."""
    mask = np.zeros(n)
    for s in rng.choice(n, size=rng.poisson(per_day * n / points_per_day), replace=False):
        mask[s: s + rng.integers(1, length + 1)] = 1.0
    return mask


def _after(t: np.ndarray, regression: Regression | None, kind: str) -> np.ndarray:
    if regression is None or regression.kind != kind:
        return np.zeros(len(t), dtype=bool)
    return t >= regression.onset


def _errors(rng: np.random.Generator, t: np.ndarray, count: np.ndarray, base: float, bursts: np.ndarray,
            regression: Regression | None) -> np.ndarray:
    p = base * (1.0 + 4.0 * bursts)
    if regression is not None:
        p = p + np.where(_after(t, regression, "errors"), regression.error_step, 0.0)
    errors = rng.binomial(count.astype(np.int64), np.minimum(p, 1.0))
    return np.where(count > 0, errors / np.maximum(count, 1.0), 0.0)


def _latency(rng: np.random.Generator, t: np.ndarray, count: np.ndarray, load: np.ndarray, p99: float,
             stall_mask: np.ndarray, releases: tuple[float, ...], regression: Regression | None) -> np.ndarray:
    level = p99 * (1.0 + 0.25 * (load - 1.0))
    for release in releases:  # cold caches: +10 % fading over ~2 minutes
        since = t - release
        level = level * (1.0 + np.where(since >= 0, 0.10 * np.exp(-np.maximum(since, 0.0) / 120.0), 0.0))
    if regression is not None:
        level = level * np.where(_after(t, regression, "latency"), regression.latency_factor, 1.0)
    noise = rng.normal(0.0, 0.03 + 0.6 / np.sqrt(np.maximum(count * 0.01, 1.0)))
    stalls = stall_mask * rng.exponential(1.0, len(t))
    return level * np.exp(noise) * (1.0 + stalls)


def _memory(rng: np.random.Generator, t: np.ndarray, load: np.ndarray, base: float,
            regression: Regression | None) -> np.ndarray:
    level = base * (1.0 + 0.05 * (load - 1.0))  # a rolling release keeps the replicas' average
    if regression is not None and regression.kind == "memory_leak":
        hours = np.maximum(t - regression.onset, 0.0) / 3600.0
        level = level + base * regression.leak_per_hour * hours
    return level * (1.0 + rng.normal(0.0, 0.004, len(t)))


def _kpi(rng: np.random.Generator, count: np.ndarray, conversion: float, t: np.ndarray,
         regression: Regression | None) -> np.ndarray:
    rate = np.full(len(t), conversion)
    if regression is not None:
        rate = rate * np.where(_after(t, regression, "kpi"), regression.kpi_factor, 1.0)
    converted = rng.binomial(count.astype(np.int64), rate)
    return np.where(count > 0, converted / np.maximum(count, 1.0), 0.0)
