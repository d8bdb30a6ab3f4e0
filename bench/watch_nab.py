"""A NAB-like corpus of simulated operational series and a NAB-style windowed scorer, for ``bench/watch.py``.

No public data is read: each file is generated from a seed to resemble the kinds of series a labelled
operational benchmark holds (cloud CPU and network with flat stretches and quantisation, request counts
with daily and weekly seasons, heavy-tailed latency, bursty tweet-like counts, slow machine temperatures,
irregularly sampled traffic speeds, hourly ad metrics), at different scales and sampling rates, with
labelled anomalies (spikes, level shifts, drifts, flat-lines, variance changes, broken seasonality).

Scoring follows the Numenta Anomaly Benchmark's standard profile: one window per label, 10 % of the file
split among its labels, centred on the label; the first detection in a window earns the scaled sigmoid
of its position (earlier is better), a window with no detection costs 1, every detection outside a
window costs 0.11 (less just after a window); the first 15 % of each file is probationary (not scored).
Per detector, 100 x (raw - never-alarm) / (perfect - never-alarm), at a given threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

A_TP, A_FP, A_FN = 1.0, 0.11, 1.0
PROBATION = 0.15


@dataclass(frozen=True)
class LabelledSeries:
    name: str
    timestamps: np.ndarray
    values: np.ndarray
    labels: tuple[int, ...]  # indices of anomaly onsets


def _sigmoid(position: float) -> float:
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def windows(series: LabelledSeries) -> list[tuple[int, int]]:
    n = len(series.values)
    if not series.labels:
        return []
    half = int(0.1 * n / len(series.labels) / 2)
    return [(max(0, i - half), min(n - 1, i + half)) for i in series.labels]


def nab_raw(series: LabelledSeries, alarms: np.ndarray) -> tuple[float, float, float]:
    """(raw score, perfect score, never-alarm score) of one file's boolean alarms."""
    n = len(alarms)
    start = int(PROBATION * n)
    wins = windows(series)
    raw = 0.0
    detected = [False] * len(wins)
    for index in np.flatnonzero(alarms[start:]) + start:
        inside = next((k for k, (a, b) in enumerate(wins) if a <= index <= b), None)
        if inside is not None:
            if not detected[inside]:
                a, b = wins[inside]
                detected[inside] = True
                raw += A_TP * _sigmoid(-(b - index) / max(b - a, 1))
            continue
        before = [b for a, b in wins if b < index]
        if before:
            length = max(wins[0][1] - wins[0][0], 1)
            raw -= A_FP * abs(_sigmoid((index - before[-1]) / length))
        else:
            raw -= A_FP * _sigmoid(-1.0)
    raw -= A_FN * detected.count(False)
    return raw, A_TP * _sigmoid(-1.0) * len(wins), -A_FN * len(wins)


def nab_score(corpus: list[LabelledSeries], scores: list[np.ndarray], threshold: float) -> float:
    raw = perfect = null = 0.0
    for series, s in zip(corpus, scores, strict=True):
        r, p, z = nab_raw(series, s >= threshold)
        raw, perfect, null = raw + r, perfect + p, null + z
    return 100.0 * (raw - null) / (perfect - null)


def best_threshold(corpus: list[LabelledSeries], scores: list[np.ndarray]) -> tuple[float, float]:
    """NAB's optimised threshold: (threshold, score) maximising the corpus score over a grid of quantiles."""
    pooled = np.concatenate(scores)
    grid = np.unique(np.quantile(pooled, 1.0 - np.logspace(-5.5, -0.7, 45)))
    best = max(((nab_score(corpus, scores, float(t)), float(t)) for t in grid), key=lambda x: x[0])
    return best[1], best[0]


# ---- the corpus ------------------------------------------------------------------------------------

def _times(rng: np.random.Generator, n: int, step: float, irregular: bool) -> np.ndarray:
    start = 1_396_310_400.0  # 2014-04-01
    if not irregular:
        return start + step * np.arange(n)
    return start + np.cumsum(rng.choice([step / 2, step, step, step * 2, step * 4], size=n))


def _daily(t: np.ndarray, weekly: float = 0.0) -> np.ndarray:
    hour = (t % 86400) / 3600
    weekend = ((t // 86400).astype(int) + 3) % 7 >= 5
    return (1 + 0.6 * np.sin(2 * np.pi * (hour - 9) / 24)) * np.where(weekend, 1 - weekly, 1.0)


def _inject(rng: np.random.Generator, x: np.ndarray, kind: str, at: int, scale: float) -> None:
    n = len(x)
    if kind == "spike":
        x[at: at + int(rng.integers(1, 4))] += rng.choice([-1, 1]) * scale * rng.uniform(6, 12)
    elif kind == "shift":
        x[at:] += rng.choice([-1, 1]) * scale * rng.uniform(3, 6)
    elif kind == "drift":
        ramp = np.arange(n - at) / (0.02 * n)
        x[at:] += scale * 3 * ramp
    elif kind == "flat":
        x[at: at + int(0.03 * n)] = x[at]
    elif kind == "variance":
        end = at + int(0.04 * n)
        x[at:end] += rng.normal(0, 4 * scale, len(x[at:end]))
    elif kind == "outage":
        x[at: at + int(rng.integers(5, 30))] *= 0.1


def _series(rng: np.random.Generator, family: str, n: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(timestamps, clean values, a typical noise scale) of one family."""
    if family == "traffic":
        t = _times(rng, n, 300, False)
        base = rng.uniform(50, 5000)
        x = rng.poisson(base * _daily(t, 0.3)).astype(float)
        return t, x, math.sqrt(base)
    if family == "cpu":
        t = _times(rng, n, 300, False)
        level = rng.uniform(2, 60)
        x = level + rng.standard_t(3, n) * level * 0.05
        x = np.round(np.clip(x, 0, 100), int(rng.integers(0, 2)))
        return t, x, level * 0.05 + 0.5
    if family == "latency":
        t = _times(rng, n, 300, False)
        base = rng.uniform(20, 500)
        x = base * np.exp(rng.normal(0, 0.15, n)) * (1 + (rng.random(n) < 0.01) * rng.exponential(1.5, n))
        return t, x, base * 0.15
    if family == "tweets":
        t = _times(rng, n, 300, False)
        base = rng.uniform(5, 80)
        lam = base * _daily(t) * np.exp(np.cumsum(rng.normal(0, 0.01, n)) * 0.3)
        x = rng.negative_binomial(5, 5 / (5 + lam)).astype(float)
        return t, x, math.sqrt(base) * 1.5
    if family == "temperature":
        t = _times(rng, n, 300, False)
        ar = np.zeros(n)
        for i in range(1, n):
            ar[i] = 0.995 * ar[i - 1] + rng.normal(0, 0.2)
        x = rng.uniform(60, 90) + ar + 2 * np.sin(2 * np.pi * t / 86400)
        return t, x, 1.0
    if family == "speed":
        t = _times(rng, n, 300, True)
        x = np.clip(rng.uniform(50, 70) - 15 * (_daily(t) - 1) + rng.normal(0, 4, n), 0, 90)
        return t, x, 4.0
    t = _times(rng, n, 3600, False)  # ad metrics, hourly
    base = rng.uniform(0.5, 3)
    x = base * _daily(t, 0.2) * np.exp(rng.normal(0, 0.1, n))
    return t, x, base * 0.15


FAMILIES = ("traffic", "cpu", "latency", "tweets", "temperature", "speed", "ads")
KINDS = ("spike", "shift", "drift", "flat", "variance", "outage")


def corpus(seed: int, files: int) -> list[LabelledSeries]:
    """``files`` labelled series, every family and anomaly kind represented; a few files have no anomaly."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(files):
        family = FAMILIES[k % len(FAMILIES)]
        n = int(rng.integers(1500, 6000)) if family != "ads" else int(rng.integers(1200, 1800))
        t, x, scale = _series(rng, family, n)
        count = 0 if k % 10 == 9 else int(rng.integers(1, 4))
        onsets = sorted(int(i) for i in rng.choice(np.arange(int(0.2 * n), int(0.95 * n)), count, replace=False))
        onsets = [o for j, o in enumerate(onsets) if j == 0 or o - onsets[j - 1] > 0.1 * n]
        for j, at in enumerate(onsets):
            kind = KINDS[(k + j) % len(KINDS)]
            if kind == "flat" and family in ("traffic", "tweets"):
                kind = "outage"
            _inject(rng, x, kind, at, scale)
        if family in ("traffic", "tweets", "cpu"):
            x = np.maximum(x, 0)
        out.append(LabelledSeries(f"{family}-{k}", t, x, tuple(onsets)))
    return out


def score_series(make: Callable[[], object], series: LabelledSeries) -> np.ndarray:
    detector = make()
    score = detector.score  # type: ignore[attr-defined]
    return np.fromiter((score(t, v) for t, v in zip(series.timestamps.tolist(), series.values.tolist(),
                                                    strict=True)), float, len(series.values))
