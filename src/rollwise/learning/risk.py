"""A change's risk: features from git, a learner warmed on the repository and taught by the store.

Training rows are (1) every earlier commit of the repository, labelled by SZZ-lite (reverted, or the
last change to a file a later fix touched; ``features.szz_lite``), and (2) every finished rollout
in the store that recorded its change's features, labelled 1 when it rolled back or was aborted.
The learner (``learner.RiskModel``) is refit from these rows on each call: the rows are the state
(the store keeps them in its ``risk`` events), and a refit on a few thousand rows takes well
under a second. The service's recent change failure rate is a feature of the store's rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from rollwise.learning.features import FEATURES, Commit, history_features, squash, szz_lite

SERVICE_RATE = "service_failure_rate"
COLUMNS = (*FEATURES, SERVICE_RATE)
RATE_WINDOW_S = 30 * 86400.0


@dataclass(frozen=True)
class PastRollout:
    """A finished rollout as the learner sees it."""

    service: str
    finished_at: float
    failed: bool
    features: dict[str, float] | None = None


@dataclass(frozen=True)
class RiskAssessment:
    score: float
    features: dict[str, float]
    factors: list[tuple[str, float]]
    trained_on: int
    failures_seen: int
    sources: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"score": round(self.score, 4), "features": {k: _clean(v) for k, v in self.features.items()},
                "factors": [{"feature": name, "contribution": round(term, 4)} for name, term in self.factors],
                "trained_on": self.trained_on, "failures_seen": self.failures_seen, "sources": self.sources}


def _clean(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def failure_rate(past: Iterable[PastRollout], service: str | None, now: float) -> float:
    """Share of the service's rollouts finished in the last 30 days that failed (NaN when none)."""
    recent = [p.failed for p in past if p.service == service and now - p.finished_at <= RATE_WINDOW_S]
    return sum(recent) / len(recent) if recent else math.nan


def _row(features: dict[str, float]) -> list[float]:
    return [float(features.get(name, math.nan)) for name in COLUMNS]


def assess_change(history: list[Commit], change: list[Commit], past: list[PastRollout], service: str | None,
                  now: float, top: int = 5) -> RiskAssessment:
    """Score ``change`` (the commits of the range, oldest first) after the commits of ``history``."""
    state, rows = history_features(history)
    labels = szz_lite(history)
    features = state.features(squash(change))
    features[SERVICE_RATE] = failure_rate(past, service, now)
    taught = [p for p in past if p.features is not None]
    x = np.array([_row(r) for r in rows] + [_row(p.features or {}) for p in taught], dtype=float)
    x = x.reshape(-1, len(COLUMNS))
    y = np.array(labels + [int(p.failed) for p in taught], dtype=int)
    usable = ~np.all(np.isnan(x), axis=0)  # a column nobody has (the failure rate before any rollout)
    names = [n for n, u in zip(COLUMNS, usable, strict=True) if u]
    x = x[:, usable]
    from rollwise.learning.learner import RiskModel  # scikit-learn loads only when a change is scored

    model = RiskModel()
    if len(y):
        model.fit(x, y)
    point = np.array([[features.get(n, math.nan) for n in names]], dtype=float)
    score = float(model.score(point)[0]) if names else 0.5
    factors = model.contributions(point[0], names)[:top] if names else []
    return RiskAssessment(score, features, factors, trained_on=len(y), failures_seen=int(y.sum()),
                          sources={"repository_commits": len(rows), "rollouts": len(taught)})
