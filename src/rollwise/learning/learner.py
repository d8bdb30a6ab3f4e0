"""Risk learners: a change's features in, the probability that it fails out.

Both are refit on every change whose outcome is known (``evaluation`` decides which and when), and
both weigh the rare failing class up to the common one (``class_weight="balanced"``), so 0.5 is
the natural threshold. ``RiskModel`` is the one rollwise scores with, chosen by measurement
(``bench/learning.py``): the mean of a gradient-boosted tree ensemble (scikit-learn's
histogram GBM: missing values native, heavy tails and interactions without transforms) and a
logistic regression on log-scaled features with missing-value indicators (steady on small
histories, and its terms say which features drove a score). ``RefitLogistic`` is the plain
baseline it must beat: a logistic regression on the raw features, median-imputed and scaled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

SEED = 0


class RiskLearner(Protocol):
    def fit(self, x: np.ndarray, y: np.ndarray) -> None: ...

    def score(self, x: np.ndarray) -> np.ndarray:
        """Probability of failure per row (0.5 when nothing has been learned)."""
        ...


@dataclass
class Scaled:
    """Median imputation (plus optional missing indicators and log1p of count-like columns) and scaling,
    with the numbers fixed at fit time so a score uses nothing from the rows it scores."""

    log_counts: bool = True
    indicators: bool = True
    logged: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    medians: np.ndarray = field(default_factory=lambda: np.zeros(0))
    flagged: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scale: np.ndarray = field(default_factory=lambda: np.ones(0))

    def fit(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            low = np.nanmin(np.where(np.isnan(x), np.inf, x), axis=0)
        self.logged = (low >= 0) & self.log_counts
        self.medians = np.nan_to_num(np.nanmedian(self._logged(x), axis=0)) if x.shape[0] else np.zeros(x.shape[1])
        self.flagged = np.isnan(x).any(axis=0) & self.indicators
        plain = self._plain(x)
        self.mean = plain.mean(axis=0)
        spread = plain.std(axis=0)
        self.scale = np.where(spread > 0, spread, 1.0)
        return (plain - self.mean) / self.scale

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (self._plain(x) - self.mean) / self.scale

    def _logged(self, x: np.ndarray) -> np.ndarray:
        out = x.copy()
        out[:, self.logged] = np.log1p(np.clip(out[:, self.logged], 0, None))
        return out

    def _plain(self, x: np.ndarray) -> np.ndarray:
        logged = self._logged(x)
        missing = np.isnan(logged)
        filled = np.where(missing, self.medians, logged)
        return np.hstack([filled, missing[:, self.flagged].astype(float)])


@dataclass
class RefitLogistic:
    """The baseline: logistic regression on raw, median-imputed, standardized features."""

    scaled: Scaled = field(default_factory=lambda: Scaled(log_counts=False, indicators=False))
    model: LogisticRegression | None = None
    constant: float = 0.5

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        self.model = _logistic(self.scaled, x, y)
        self.constant = 0.5

    def score(self, x: np.ndarray) -> np.ndarray:
        if self.model is None:
            return np.full(x.shape[0], self.constant)
        return np.asarray(self.model.predict_proba(self.scaled.transform(x))[:, 1])


def _logistic(scaled: Scaled, x: np.ndarray, y: np.ndarray,
              half_life: float | None = None) -> LogisticRegression | None:
    if len(np.unique(y)) < 2:
        return None
    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=500)
    weight = None if half_life is None else 0.5 ** ((len(y) - 1 - np.arange(len(y))) / half_life)
    with threadpool_limits(1):
        model.fit(scaled.fit(x), y, sample_weight=weight)
    return model


@dataclass
class RiskModel:
    """Gradient-boosted trees and a log-scaled logistic regression, averaged (see the module doc)."""

    trees: bool = False
    half_life: float | None = None
    scaled: Scaled = field(default_factory=Scaled)
    linear: LogisticRegression | None = None
    boosted: HistGradientBoostingClassifier | None = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> None:
        self.linear = _logistic(self.scaled, x, y, self.half_life)
        self.boosted = None
        if self.linear is None or not self.trees or min(int(y.sum()), int((1 - y).sum())) < 10:
            return
        self.boosted = HistGradientBoostingClassifier(
            max_iter=120, learning_rate=0.06, max_leaf_nodes=15, min_samples_leaf=20, l2_regularization=1.0,
            class_weight="balanced", early_stopping=False, random_state=SEED,
        )
        with threadpool_limits(1):  # OpenMP threads fighting for a busy machine's cores are slower than one
            self.boosted.fit(x, y)

    def score(self, x: np.ndarray) -> np.ndarray:
        if self.linear is None:
            return np.full(x.shape[0], 0.5)
        linear = self.linear.predict_proba(self.scaled.transform(x))[:, 1]
        if self.boosted is None:
            return np.asarray(linear)
        return np.asarray((linear + self.boosted.predict_proba(x)[:, 1]) / 2)

    def contributions(self, x_row: np.ndarray, names: list[str]) -> list[tuple[str, float]]:
        """Each feature's term in the linear part's log-odds for one change, largest first."""
        if self.linear is None:
            return []
        terms = self.scaled.transform(x_row.reshape(1, -1))[0] * self.linear.coef_[0]
        labels = names + [f"{n} missing" for n, f in zip(names, self.scaled.flagged, strict=True) if f]
        return sorted(zip(labels, terms.tolist(), strict=True), key=lambda item: -abs(item[1]))
