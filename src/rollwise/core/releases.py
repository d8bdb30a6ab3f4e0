"""What a finished rollout measured, per metric: the record past releases leave for the next one.

When a rollout ends (succeeded, rolled back, aborted) the engine keeps, per service and metric, the
attribution test's last estimate: the rate ratio with its anytime-valid interval, the absolute
effect with its interval, the counts behind them, and whether that metric was a regression. The
next rollout of the service fits its mixture prior on these (``rollwise.learning.priors``).

Pure: ``effects_of`` reads a record and its decision events, nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rollwise.core.evidence import EvidenceError, MetricEvidence, decision_of
from rollwise.core.model import Event, Phase, RolloutRecord


@dataclass(frozen=True)
class PastEffect:
    """One metric of one finished rollout, as measured when its last decision was taken."""

    service: str
    metric: str
    metric_type: str  # errorRate, latency, custom, kpi
    rollout: str
    run: int
    finished_at: float
    outcome: str  # the rollout's end phase
    regression: bool  # the metric rolled the canary back, or its ratio interval lies above 1
    ratio: float  # maximum-likelihood rate ratio canary / baseline
    ratio_low: float | None = None
    ratio_high: float | None = None
    effect: float | None = None  # canary rate - baseline rate (relative change for KPIs)
    effect_low: float | None = None
    effect_high: float | None = None
    canary_trials: float = 0.0
    canary_bad: float = 0.0
    baseline_trials: float = 0.0
    baseline_bad: float = 0.0
    prior_trials: float = 0.0  # the stable version's requests from before the rollout (its rate prior)
    prior_bad: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def log_ratio(self) -> tuple[float, float]:
        """(log rate ratio, its sampling variance) from the counts, each rate smoothed by half an event.

        Steadier than the test's maximum-likelihood ratio, which sits on the grid's end (1000) when
        the baseline saw no bad event; the baseline's rate uses its pre-rollout history too.
        """
        baseline_trials = self.baseline_trials + self.prior_trials
        if self.canary_trials <= 0 or baseline_trials <= 0:
            return math.log(max(self.ratio, 1e-12)), 1.0
        canary, baseline = self.canary_bad + 0.5, self.baseline_bad + self.prior_bad + 0.5
        log_ratio = math.log(canary / (self.canary_trials + 0.5)) - math.log(baseline / (baseline_trials + 0.5))
        return log_ratio, 1.0 / canary + 1.0 / baseline


def _last_evidence(events: Sequence[Event]) -> tuple[dict[str, MetricEvidence], str | None]:
    """Per metric, its evidence in the latest decision that had it; and the rollback's culprit."""
    latest: dict[str, MetricEvidence] = {}
    culprit: str | None = None
    for event in events:
        if event.type != "decision":
            continue
        try:
            decision = decision_of(event.data)
        except (EvidenceError, ValueError):  # evidence this code cannot read teaches nothing
            continue
        for metric in decision.evidence.metrics:
            latest[metric.metric] = metric
        if decision.action == "rollback":
            culprit = decision.culprit
    return latest, culprit


def effects_of(record: RolloutRecord, events: Sequence[Event]) -> list[PastEffect]:
    """What ``record`` (ended) measured per attribution-tested metric, from its decision events."""
    if not record.phase.terminal:
        return []
    analysis = record.spec.analysis()
    types = {m.name: m.type for m in analysis.metrics} if analysis is not None else {}
    latest, culprit = _last_evidence([e for e in events if e.rollout == record.name])
    effects = []
    for name, metric in latest.items():
        params = metric.params
        if not metric.test.startswith("attribution") or params.ratio is None:
            continue
        low, high = (params.ratioInterval or [None, None])[:2]
        effect_low, effect_high = (metric.interval or [None, None])[:2]
        rolled_back = record.phase == Phase.ROLLED_BACK and culprit == name
        effects.append(PastEffect(
            service=record.spec.service, metric=name, metric_type=types.get(name, "custom"),
            rollout=record.name, run=record.run, finished_at=record.finished_at or record.updated_at,
            outcome=str(record.phase), regression=rolled_back or (low is not None and low > 1.0),
            ratio=float(params.ratio), ratio_low=low, ratio_high=high,
            effect=metric.effect, effect_low=effect_low, effect_high=effect_high,
            canary_trials=float(metric.canary.trials or 0.0), canary_bad=float(metric.canary.bad or 0.0),
            baseline_trials=float(metric.baseline.trials or 0.0), baseline_bad=float(metric.baseline.bad or 0.0),
            prior_trials=float(metric.baseline.priorTrials or 0.0), prior_bad=float(metric.baseline.priorBad or 0.0),
        ))
    return effects
