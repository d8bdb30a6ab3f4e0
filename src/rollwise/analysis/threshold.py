"""A Flagger-style threshold judge: one check per window, fixed gates, a failure limit.

It is the simple, familiar baseline: easy to reason about, but it compares point estimates and
counts failed checks, so it reacts slowly and can be fooled by noise. The sequential judge is the
default; this one stays for teams that want exactly the behaviour they know.
"""

from __future__ import annotations

from rollwise.core.evidence import JudgeDetails, MetricEvidence, MetricParams, SideCounts
from rollwise.core.model import Action, StageContext, Verdict, VersionStats, Window
from rollwise.core.units import format_percent
from rollwise.spec.models import AnalysisSpec, MetricSpec


def metric_value(metric: MetricSpec, stats: VersionStats, per_request: bool = False) -> float | None:
    """A metric's point value in one window; a custom metric is its raw value, or per request."""
    if metric.type == "errorRate":
        return stats.error_rate if stats.requests else None
    if metric.type == "latency":
        return stats.quantile(metric.quantile)
    if metric.type == "kpi":
        assert metric.numerator and metric.denominator
        trials = stats.kpis.get(metric.denominator, 0.0)
        return stats.kpis.get(metric.numerator, 0.0) / trials if trials else None
    if not per_request:
        return stats.extra.get(metric.name)
    if metric.name not in stats.extra or not stats.requests:
        return None
    return stats.extra[metric.name] / stats.requests


def _fmt(metric: MetricSpec, value: float | None) -> str:
    if value is None:
        return "n/a"
    if metric.type == "errorRate":
        return format_percent(value)
    if metric.type == "latency":
        return f"{value:.1f}ms"
    return f"{value:.4g}"


class ThresholdJudge:
    def __init__(self, analysis: AnalysisSpec):
        self.analysis = analysis
        self._checked: dict[tuple[float, float], tuple[list[str], list[MetricEvidence]]] = {}

    def _check_window(self, window: Window) -> tuple[list[str], list[MetricEvidence]]:
        """Checks of one window; memoised, since a stage's windows are judged again every tick."""
        key = (window.start, window.end)
        cached = self._checked.get(key)
        if cached is not None:
            return cached
        assert window.canary is not None and window.baseline is not None
        analysis = self.analysis
        failed: list[str] = []
        results: list[MetricEvidence] = []
        for metric in analysis.metrics:
            ok, text = self._check(metric, window.canary, window.baseline)
            results.append(MetricEvidence(
                metric=metric.name, test="threshold", action=str(Action.CONTINUE if ok else Action.ROLLBACK),
                statistic=metric_value(metric, window.canary),
                threshold=metric.slo.value if metric.slo else None,
                canary=SideCounts(requests=window.canary.requests, errors=window.canary.errors),
                baseline=SideCounts(requests=window.baseline.requests, errors=window.baseline.errors),
                params=MetricParams(failureLimit=analysis.failureLimit), summary=text,
            ))
            if not ok:
                failed.append(text)
        if len(self._checked) > 10_000:
            self._checked.clear()
        self._checked[key] = (failed, results)
        return failed, results

    def _check(self, metric: MetricSpec, canary: VersionStats, baseline: VersionStats) -> tuple[bool, str]:
        value = metric_value(metric, canary)
        base = metric_value(metric, baseline)
        if value is None:
            return True, f"{metric.name}: no canary samples"
        if metric.slo is not None and not metric.slo.holds(value):
            return False, f"{metric.name} {_fmt(metric, value)} breaks SLO {metric.slo.text}"
        if metric.maxIncrease is not None and base is not None:
            if metric.type == "kpi":
                worse = value < base * (1 - metric.maxIncrease)
            elif metric.type == "latency":
                worse = value > base * (1 + metric.maxIncrease)
            else:
                worse = value > base + metric.maxIncrease
            if worse:
                return False, (f"{metric.name} {_fmt(metric, value)} vs baseline {_fmt(metric, base)} "
                               f"exceeds tolerated change {metric.maxIncrease:g}")
        return True, f"{metric.name} {_fmt(metric, value)} ok (baseline {_fmt(metric, base)})"

    def evaluate(self, context: StageContext) -> Verdict:
        analysis = self.analysis
        failures = 0
        last_failed: list[str] = []
        last_results: list[MetricEvidence] = []
        for window in context.windows:
            if not window.has_data:
                continue
            assert window.canary is not None
            if window.canary.requests == 0:
                continue
            failed_now, results = self._check_window(window)
            if failed_now:
                failures += 1
            last_failed, last_results = failed_now, results
        latest = context.windows[-1] if context.windows else None
        served = sum(w.canary.errors for w in context.windows if w.canary is not None)
        evidence = JudgeDetails(failed_checks=failures, failure_limit=analysis.failureLimit, bad_served=served)
        if failures >= analysis.failureLimit:
            culprit = last_failed[0].split(" ")[0] if last_failed else None
            return Verdict(Action.ROLLBACK, f"{failures} failed checks (limit {analysis.failureLimit}): "
                           + "; ".join(last_failed), rule="threshold.failureLimit", culprit=culprit,
                           metrics=tuple(last_results), details=evidence)
        if latest is None or not latest.has_data:
            return Verdict(Action.HOLD, "no metrics in the latest window", rule="threshold.noData",
                           details=evidence)
        canary_requests = sum(w.canary.requests for w in context.windows if w.canary is not None)
        if canary_requests >= analysis.minSamples and not last_failed:
            return Verdict(Action.EXPAND, f"all checks pass over {canary_requests} canary requests",
                           rule="threshold.pass", metrics=tuple(last_results), details=evidence)
        return Verdict(Action.CONTINUE, f"{canary_requests}/{analysis.minSamples} canary requests; "
                       f"{failures} failed checks", rule="threshold.wait", metrics=tuple(last_results),
                       details=evidence)
