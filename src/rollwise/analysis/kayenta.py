"""A Kayenta-style judge, for teams migrating from Spinnaker's automated canary analysis.

Kayenta compares canary and baseline per metric with a Mann-Whitney U test over time-bucketed
values, classifies each metric Pass / High / Low / Nodata, and scores the canary as the weighted
share of metrics that passed: at or above ``passScore`` the canary passes, below
``marginalScore`` it fails, in between it is marginal (a human decides). It does not correct for
repeated looks, so this judge scores a stage *once*, when it has ``MIN_POINTS`` buckets (Kayenta's
guidance: at least 50 data points per metric), and the result stands for the stage.

Values per bucket: error rate, the latency quantile read off the merged histogram, a KPI's ratio,
or a custom counter per request. A metric is bad when it moves in its bad direction (High for
errors and latency, Low for a KPI unless ``higherIsBetter: false``); moving the good way passes.
A critical metric that fails sets the score to 0, as in Kayenta.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import mannwhitneyu

from rollwise.analysis.threshold import metric_value
from rollwise.core.evidence import JudgeDetails, MetricEvidence, MetricParams
from rollwise.core.model import Action, StageContext, Verdict, VersionStats, Window
from rollwise.spec.models import AnalysisSpec, KayentaSpec, MetricSpec

#: Buckets a stage needs before it is scored (Kayenta's guidance: at least 50 points per metric).
MIN_POINTS = 50
#: Fewer points than this on either side make a metric Nodata.
MIN_METRIC_POINTS = 3


def bucket_windows(
    windows: tuple[Window, ...], stage_start: float, bucket: float
) -> list[tuple[VersionStats, VersionStats]]:
    """Merge the stage's windows into complete buckets of ``bucket`` seconds that have data."""
    grouped: dict[int, list[Window]] = {}
    for window in windows:
        if window.has_data:
            grouped.setdefault(math.floor((window.start - stage_start) / bucket + 1e-9), []).append(window)
    last_end = max((w.end for w in windows), default=stage_start)
    complete = math.floor((last_end - stage_start) / bucket + 1e-9)
    out = []
    for index in sorted(grouped):
        if index >= complete:
            continue
        parts = grouped[index]
        out.append((
            VersionStats.merge([w.baseline for w in parts if w.baseline is not None]),
            VersionStats.merge([w.canary for w in parts if w.canary is not None]),
        ))
    return out


def classify(
    metric: MetricSpec, canary: list[float], baseline: list[float], confidence: float
) -> tuple[str, MetricParams]:
    """Pass / High / Low / Nodata for one metric, with the test's numbers."""
    if len(canary) < MIN_METRIC_POINTS or len(baseline) < MIN_METRIC_POINTS:
        return "Nodata", MetricParams(points=[len(canary), len(baseline)])
    c, b = np.asarray(canary), np.asarray(baseline)
    if np.ptp(np.concatenate([c, b])) == 0:
        return "Pass", MetricParams(points=[len(c), len(b)], pValue=1.0)
    result = mannwhitneyu(c, b, alternative="two-sided")
    p_value = float(result.pvalue)
    shift = float(np.median(np.subtract.outer(c, b)))  # Hodges-Lehmann estimate of the shift
    detail = MetricParams(points=[len(c), len(b)], u=float(result.statistic), pValue=p_value, shift=shift,
                          canaryMedian=float(np.median(c)), baselineMedian=float(np.median(b)))
    if p_value >= 1.0 - confidence or shift == 0:
        return "Pass", detail
    return ("High" if shift > 0 else "Low"), detail


def bad_direction(metric: MetricSpec) -> str:
    if metric.type == "kpi":
        return "High" if metric.higherIsBetter is False else "Low"
    return "Low" if metric.higherIsBetter else "High"


class KayentaJudge:
    name = "kayenta"

    def __init__(self, analysis: AnalysisSpec):
        self.analysis = analysis
        self.config = analysis.kayenta or KayentaSpec()

    def evaluate(self, context: StageContext) -> Verdict:
        config = self.config
        buckets = bucket_windows(context.windows, context.stage_started_at, config.bucket)
        canary_requests = sum(c.requests for _, c in buckets)
        evidence = JudgeDetails(
            judge="kayenta", buckets=len(buckets), minPoints=MIN_POINTS, bucketSeconds=config.bucket,
            confidence=config.confidence, passScore=config.passScore, marginalScore=config.marginalScore,
            canaryRequests=canary_requests,
        )
        if not any(w.has_data for w in context.windows):
            return Verdict(Action.HOLD, "no metrics arrived in this stage yet", rule="no-data", details=evidence)
        if len(buckets) < MIN_POINTS:
            return Verdict(Action.CONTINUE, f"collecting buckets ({len(buckets)}/{MIN_POINTS})",
                           rule="collecting", details=evidence)
        results = []
        scored_weight = passed_weight = 0.0
        failed: list[tuple[float, str]] = []
        critical_failed = False
        for metric in self.analysis.metrics:
            canary_values = [v for _, c in buckets if (v := metric_value(metric, c, per_request=True)) is not None]
            baseline_values = [v for b, _ in buckets if (v := metric_value(metric, b, per_request=True)) is not None]
            label, detail = classify(metric, canary_values, baseline_values, config.confidence)
            is_bad = label == bad_direction(metric)
            if label != "Nodata":
                scored_weight += metric.weight
                if not is_bad:
                    passed_weight += metric.weight
                else:
                    failed.append((metric.weight, metric.name))
                    critical_failed = critical_failed or metric.critical
            params = MetricParams(classification=label, weight=metric.weight).merged(detail)
            results.append(MetricEvidence(
                metric=metric.name, test="mann-whitney", action=str(Action.ROLLBACK if is_bad else Action.CONTINUE),
                statistic=detail.pValue, threshold=1.0 - config.confidence, effect=detail.shift, params=params,
                summary=f"{metric.name}: {label}",
            ))
        if scored_weight == 0:
            return Verdict(Action.HOLD, "every metric is Nodata", rule="nodata", metrics=tuple(results),
                           details=evidence)
        score = 0.0 if critical_failed else 100.0 * passed_weight / scored_weight
        evidence.score = score
        culprit = max(failed)[1] if failed else None
        if score < config.marginalScore:
            return Verdict(Action.ROLLBACK, f"canary score {score:.0f} < marginal {config.marginalScore:g}",
                           rule="kayenta-score", culprit=culprit, metrics=tuple(results), details=evidence)
        if score < config.passScore:
            return Verdict(Action.INCONCLUSIVE, f"canary score {score:.0f} is marginal",
                           rule="kayenta-marginal", culprit=culprit, metrics=tuple(results), details=evidence)
        if canary_requests < self.analysis.minSamples:
            return Verdict(Action.CONTINUE, f"score {score:.0f} but only {canary_requests} canary requests",
                           rule="min-samples", metrics=tuple(results), details=evidence)
        return Verdict(Action.EXPAND, f"canary score {score:.0f} ≥ pass {config.passScore:g}",
                       rule="kayenta-score", metrics=tuple(results), details=evidence)
