"""The chronological online backtest: each change scored only from what was known before it.

Rows are sorted stably by time (ties keep file order). Changes with the same time are scored
together, from changes strictly earlier; then they join the pending pool. An earlier change's
outcome is known, and learned, once the scored change's time is at least its time plus the label
delay (0 by default; ``--label-delay 90d`` models how long a defect takes to be found). The
learner is refit on every known outcome whenever ``refit_every`` new outcomes have arrived, so
between refits it scores with the last fit, which saw only the past. The first ``warmup`` changes
are learned from but not scored. Metrics:

- ``auc``: area under the ROC curve of the scores over the scored changes (ties count half);
- ``gmean``: sqrt(recall of failing × recall of clean changes) at probability 0.5 (the learners
  weigh the classes equally, so 0.5 is their balanced threshold);
- ``recall_at_20pct_effort``: the share of scored failing changes found when inspecting changes in
  order of risk per unit of effort (score / effort, the effort-aware ranking of just-in-time defect
  prediction; ties in order of time) while the inspected effort stays within 20 % of the total.
  ``effort`` is lines added + deleted when the table has them (at least 1 per change), else one per
  change, where the order is simply the riskiest first. Ranking by score alone would reach the large
  changes first and spend the budget on a handful of them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from rollwise.learning.learner import RiskLearner
from rollwise.learning.table import ChangeTable

MAX_WARMUP_SHARE = 0.10
DEFAULT_WARMUP_CAP = 1000
THRESHOLD = 0.5
EFFORT_SHARE = 0.20


def default_warmup(rows: int) -> int:
    return min(int(rows * MAX_WARMUP_SHARE), DEFAULT_WARMUP_CAP)


def default_refit_every(rows: int) -> int:
    """About 50 refits over the history, at least every 10 new outcomes (small histories change fast)."""
    return max(10, math.ceil(rows / 50))


@dataclass(frozen=True)
class Backtest:
    n: int
    positives: int
    warmup: int
    auc: float | None
    gmean: float | None
    recall_at_20pct_effort: float | None
    refits: int
    scores: np.ndarray
    labels: np.ndarray

    def to_dict(self) -> dict[str, float | int | None]:
        return {"n": self.n, "positives": self.positives, "warmup": self.warmup, "auc": _round(self.auc),
                "gmean": _round(self.gmean), "recall_at_20pct_effort": _round(self.recall_at_20pct_effort),
                "refits": self.refits}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Mann-Whitney AUC; ``None`` when one class is absent."""
    pos = int(labels.sum())
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[labels == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def gmean(scores: np.ndarray, labels: np.ndarray, threshold: float = THRESHOLD) -> float | None:
    pos = labels == 1
    if pos.all() or not pos.any():
        return None
    flagged = scores >= threshold
    return math.sqrt(float(flagged[pos].mean()) * float((~flagged[~pos]).mean()))


def recall_at_effort(scores: np.ndarray, labels: np.ndarray, effort: np.ndarray,
                     share: float = EFFORT_SHARE) -> float | None:
    if not labels.any():
        return None
    density = scores / np.maximum(effort, 1.0)
    order = np.argsort(-density, kind="stable")
    spent = np.cumsum(effort[order])
    inspected = spent <= share * spent[-1]
    return float(labels[order][inspected].sum() / labels.sum())


def _time_groups(time: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of equal times in sorted order."""
    cuts = np.flatnonzero(np.diff(time) != 0) + 1
    bounds = [0, *cuts.tolist(), len(time)]
    return list(itertools.pairwise(bounds))


def backtest(table: ChangeTable, learner: Callable[[], RiskLearner], warmup: int | None = None,
             label_delay_s: float = 0.0, refit_every: int | None = None) -> Backtest:
    """Run the protocol in the module doc over ``table``; ``learner`` builds a fresh learner per refit."""
    order = np.argsort(table.time, kind="stable")
    x, y, time, effort = table.x[order], table.y[order], table.time[order], table.effort[order]
    rows = len(y)
    warm = default_warmup(rows) if warmup is None else warmup
    every = refit_every or default_refit_every(rows)
    scores = np.full(rows, 0.5)
    model: RiskLearner | None = None
    known = fitted = refits = segment = 0  # outcomes of [0, known) are known; the model saw [0, fitted)

    def score_until(stop: int) -> None:  # the model is fixed between refits: score its rows at once
        begin = max(segment, warm)
        if model is not None and stop > begin:
            scores[begin:stop] = model.score(x[begin:stop])

    for start, _end in _time_groups(time):
        while known < start and time[known] + label_delay_s <= time[start]:
            known += 1
        if known - fitted >= every or (model is None and known > 0 and start >= warm):
            score_until(start)
            model = learner()
            model.fit(x[:known], y[:known])
            fitted, refits, segment = known, refits + 1, start
    score_until(rows)
    scored = slice(min(warm, rows), rows)
    s, lab, eff = scores[scored], y[scored], effort[scored]
    return Backtest(n=len(lab), positives=int(lab.sum()), warmup=min(warm, rows), auc=auc(s, lab),
                    gmean=gmean(s, lab), recall_at_20pct_effort=recall_at_effort(s, lab, eff),
                    refits=refits, scores=s, labels=lab)
