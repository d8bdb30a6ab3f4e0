"""A streaming anomaly detector for one metric series: a robust EWMA z-score.

Minimal on purpose (a richer detector chosen by measurement replaces this module keeping its API).
Per point, the score depends only on the points before it and the point itself: the series' level is
an exponentially weighted mean, its spread an exponentially weighted mean absolute deviation, both
updated *after* scoring with the residual clipped to a few spreads, so a single spike neither hides
itself nor drags the baseline. The z-score is turned into a score in [0, 1] through the normal
distribution (``erf(z/√2)`` two-sided, ``Φ(z)`` one-sided), so ``ALARM_SCORE`` is a tail probability.
Memory is a handful of floats, whatever the series' length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

ALARM_SCORE = 0.9995
"""A score at or above this is an anomaly alarm (|z| ≈ 3.5 two-sided)."""

Direction = Literal["up", "down", "both"]
_MAD_TO_SIGMA = 1.2533  # E|X - mu| = sigma * sqrt(2/pi) for a normal: sigma = MAD_ewma * sqrt(pi/2)


@dataclass(frozen=True)
class DetectorConfig:
    alpha: float = 0.05  # EWMA weight of a new point (a memory of about 1/alpha points)
    warmup: int = 10  # points scored 0 while the level and spread settle
    clip: float = 4.0  # a residual counts at most this many spreads when updating
    min_spread: float = 1e-9  # absolute floor of the spread (a flat series is not infinitely sensitive)
    relative_floor: float = 0.01  # and a floor relative to the level (1 %)


class SeriesDetector:
    """Scores one series point by point; ``score`` must be called in time order."""

    def __init__(self, config: DetectorConfig | None = None, *, direction: Direction = "both") -> None:
        self.config = config or DetectorConfig()
        self.direction: Direction = direction
        self._count = 0
        self._level = 0.0
        self._spread = 0.0
        self._last_at = -math.inf

    def score(self, timestamp: float, value: float) -> float:
        """The anomaly score in [0, 1] of ``value`` at ``timestamp`` (epoch seconds) given the past."""
        if not math.isfinite(value):
            return 0.0
        self._last_at = max(self._last_at, timestamp)
        cfg = self.config
        if self._count == 0:
            self._level, self._spread, self._count = value, 0.0, 1
            return 0.0
        residual = value - self._level
        spread = max(self._spread * _MAD_TO_SIGMA, cfg.min_spread, cfg.relative_floor * abs(self._level))
        z = residual / spread
        self._update(residual, spread)
        if self._count <= cfg.warmup:
            return 0.0
        return self._tail(z)

    def _update(self, residual: float, spread: float) -> None:
        cfg = self.config
        bounded = max(-cfg.clip * spread, min(cfg.clip * spread, residual))
        weight = max(cfg.alpha, 1.0 / (self._count + 1))  # a plain mean while few points are in
        self._level += weight * bounded
        self._spread += weight * (abs(bounded) - self._spread)
        self._count += 1

    def _tail(self, z: float) -> float:
        if self.direction == "up":
            return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0))) if z > 0 else 0.0
        if self.direction == "down":
            return 0.5 * (1.0 + math.erf(-z / math.sqrt(2.0))) if z < 0 else 0.0
        return math.erf(abs(z) / math.sqrt(2.0))

    @property
    def memory_bytes(self) -> int:
        """What one series keeps: four floats and a counter (object overhead aside)."""
        return 5 * 8
