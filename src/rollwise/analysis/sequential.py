"""The default judge: anytime-valid sequential tests on every metric, combined by weighted Bonferroni.

Every metric gets a share ``w_i * alpha`` of the false-rollback budget (weights normalised to sum to
1) and rolls back the canary when its e-value reaches ``1 / (w_i * alpha)``. E-values are valid at
every look and under any dependence between metrics, so looking every window and watching many
metrics still keeps P(false rollback) <= alpha, and the metric that crossed is the culprit.

Per metric (see the modules named):

* comparison with the baseline: ``attribution`` (errors, custom bad-event counters), ``latency``
  (requests slower than the baseline's frozen quantile), ``kpi`` (non-inferiority of a ratio, after
  a sample-ratio-mismatch check);
* an absolute gate, if the metric has ``slo``: ``slo`` (anytime-valid bounds, never a point estimate);
* for error rates with a gate, a ``predictive`` burn-rate projection made once, when expanding.

Within a metric its share is split: half to the comparison and half across its other rollback
tests (all of it to the comparison when there is none).

A stage may **expand** once it has ``minSamples`` canary requests, no metric is undecided on the
no-regression side (the accept SPRT at ``minEffect`` — or at a default effect of concern — crossed
``1/beta``, or a KPI's confidence sequence cleared the bar, or an SLO-only gate is met), no rising
trend is seen, and the latest window has data. Metrics marked ``critical`` are the ones that must
be decided; when none is marked, all must be. A window without data is unknown, not bad: the judge
holds and the engine's ``noDataLimit`` decides what happens when that lasts.

Carry (``Verdict.details.carry``): ``{"sequential": {metric name: {...}}}`` holding each
metric's cumulative attribution state (grid log-likelihood, SPRT and accept log-ratios, counts),
its SLO counts, its frozen latency threshold and its SRM state. The engine stores it when a stage
ends and hands it back in ``StageContext.carry``; evidence therefore accumulates across stages and
runs (e-values multiply). Only the no-regression side is capped at half its bar when a stage
starts, so each stage re-earns half of it: a canary that degrades as it grows must not ride on an
earlier stage's "fine".

History (``StageContext.carry["history"]``, read once by the engine from a ``BaselineHistory``
source): the stable version's stats from before the rollout. A fresh test takes them as a prior for
the baseline rate behind its alternative and its no-regression side (at most ``PRIOR_CAP`` trials),
and a latency metric freezes its bar on them, so the rollout's first window is already tested.
Both are fixed before any window, so they shape power only, never the false-rollback bound.

Priors (``StageContext.carry["priors"]``, fitted once by the engine from past releases; see
``rollwise.learning.priors``): per metric, the mixture's weights over rate ratios when no
``minEffect`` is stated. Fixed before the first window too, so again power only; ``explain`` shows
the prior and whose releases it came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from rollwise.analysis.attribution import (
    AttributionState,
    MixturePrior,
    SequentialErrorTest,
    TestOutcome,
    WindowCounts,
)
from rollwise.analysis.evaluation import judge_stage, plan_evaluations
from rollwise.analysis.kpi import (
    SampleRatioState,
    kpi_counts,
    kpi_test,
    non_inferior,
    srm_e_value,
    srm_update,
)
from rollwise.analysis.latency import baseline_needed, exceedance_counts, frozen_bound
from rollwise.analysis.predictive import TrendState, project_burn_rate
from rollwise.analysis.slo import SloCounts, SloGate, rate_bounds
from rollwise.core.evidence import (
    BurnProjection,
    JudgeDetails,
    MetricEvidence,
    MetricParams,
    PriorEvidence,
    SideCounts,
    SloVerdict,
)
from rollwise.core.model import Action, StageContext, Verdict, VersionStats, Window
from rollwise.core.units import format_percent
from rollwise.spec.models import AnalysisSpec, MetricSpec

CARRY_KEY = "sequential"

#: The most baseline trials the stable version's history counts for in a test's baseline-rate
#: estimate (~2.5 minutes of a 200 req/s service): enough to know the rate from the first window,
#: little enough that the baseline's current behaviour soon outweighs an old one.
PRIOR_CAP = 30_000.0

#: Effect of concern (absolute increase) that must be ruled out before expanding, when the metric
#: states no minEffect: Flagger's usual 99 % success bar for errors, 1 % -> 3 % slow requests.
DEFAULT_CONCERN = {"errorRate": 0.01, "latency": 0.02, "custom": 0.01}


@dataclass(frozen=True)
class MetricPlan:
    """How one metric is judged: its share of alpha and its tests."""

    metric: MetricSpec
    weight: float
    alpha: float
    compare: SequentialErrorTest | None
    gate: SloGate | None
    burn_alpha: float | None
    blocking: bool


def plan_metrics(analysis: AnalysisSpec) -> list[MetricPlan]:
    total, any_critical = total_weight(analysis)
    plans = []
    for metric in analysis.metrics:
        weight = metric.weight / total
        alpha = analysis.alpha * weight
        has_gate = metric.slo is not None
        has_burn = has_gate and metric.type == "errorRate" and metric.slo is not None and metric.slo.op in ("<", "<=")
        wants_compare = metric.maxIncrease is not None or metric.minEffect is not None or not has_gate
        others = int(has_gate) + int(has_burn)
        compare_alpha = alpha / 2 if (wants_compare and others) else alpha
        other_alpha = (alpha - compare_alpha) / others if wants_compare and others else (alpha / max(others, 1))
        compare: SequentialErrorTest | None = None
        if wants_compare:
            if metric.type == "kpi":
                compare = kpi_test(metric, compare_alpha)
            else:
                compare = SequentialErrorTest(
                    alpha=compare_alpha,
                    tolerance=metric.maxIncrease or 0.0,
                    min_effect=metric.minEffect,
                    concern=metric.minEffect or DEFAULT_CONCERN.get(metric.type, 0.01),
                )
        plans.append(MetricPlan(
            metric=metric,
            weight=weight,
            alpha=alpha,
            compare=compare,
            gate=SloGate(metric, other_alpha) if has_gate else None,
            burn_alpha=other_alpha if has_burn else None,
            blocking=metric.critical or not any_critical,
        ))
    return plans


def total_weight(analysis: AnalysisSpec) -> tuple[float, bool]:
    """The weights the Bonferroni split normalises by, evaluations included; and whether any is critical."""
    weights = [m.weight for m in analysis.metrics] + [e.weight for e in analysis.evaluations]
    critical = [m.critical for m in analysis.metrics] + [e.critical for e in analysis.evaluations]
    return sum(weights), any(critical)


# ------------------------------------------------------------------ the fold over windows


@dataclass(frozen=True)
class MetricFold:
    """One metric's state after some windows of the stage (cumulative with what was carried in)."""

    attribution: AttributionState | None
    slo: SloCounts
    trend: TrendState = field(default_factory=TrendState)
    threshold_ms: float | None = None
    pooled_baseline: tuple[tuple[float, int], ...] = ()  # latency, until the threshold is frozen
    frozen_in_stage: bool = False
    srm: SampleRatioState | None = None
    stage_bad: float = 0.0  # canary bad events served in this stage
    stage_trials: float = 0.0


@dataclass(frozen=True)
class StageFold:
    metrics: dict[str, MetricFold]
    canary_requests: int = 0
    canary_errors: int = 0
    windows_with_data: int = 0
    last_has_data: bool = False


def _metric_counts(metric: MetricSpec, window: Window, threshold_ms: float | None) -> WindowCounts | None:
    canary, baseline = window.canary, window.baseline
    if canary is None or baseline is None:
        return None
    if metric.type == "errorRate":
        return WindowCounts(canary.requests, baseline.requests, canary.errors, baseline.errors)
    if metric.type == "latency":
        return exceedance_counts(window, threshold_ms) if threshold_ms is not None else None
    if metric.type == "kpi":
        return kpi_counts(metric, window)
    if metric.name not in canary.extra and metric.name not in baseline.extra:
        return None
    return WindowCounts(
        canary.requests, baseline.requests, canary.extra.get(metric.name, 0.0), baseline.extra.get(metric.name, 0.0)
    )


def _pool(pooled: tuple[tuple[float, int], ...], stats: VersionStats) -> tuple[tuple[float, int], ...]:
    merged = dict(pooled)
    for bound, cumulative in stats.latency_buckets:
        merged[bound] = merged.get(bound, 0) + cumulative
    return tuple(sorted(merged.items()))


def _fold_metric(plan: MetricPlan, fold: MetricFold, window: Window, t: float) -> MetricFold:
    metric = plan.metric
    if metric.type == "latency" and fold.threshold_ms is None:
        if window.baseline is None or not window.baseline.latency_buckets:
            return fold
        pooled = _pool(fold.pooled_baseline, window.baseline)
        threshold = None
        if pooled[-1][1] >= baseline_needed(metric.quantile):
            threshold = frozen_bound(VersionStats(latency_buckets=pooled), metric.quantile)
        gate_counts = plan.gate.counts(window.canary) if (plan.gate and window.canary) else SloCounts()
        attribution = fold.attribution
        if threshold is not None and attribution is not None and attribution.prior_trials == 0:
            # The windows that chose the bar stay out of the test, but they are a fair (earlier)
            # estimate of the baseline's rate above it.
            attribution = _prior(metric, attribution, VersionStats(latency_buckets=pooled), threshold)
        return replace(fold, pooled_baseline=() if threshold else pooled, threshold_ms=threshold,
                       frozen_in_stage=threshold is not None, slo=fold.slo.plus(gate_counts),
                       attribution=attribution)
    updated = fold
    if plan.gate is not None and window.canary is not None:
        updated = replace(updated, slo=fold.slo.plus(plan.gate.counts(window.canary)))
    counts = _metric_counts(metric, window, fold.threshold_ms)
    if counts is not None and plan.compare is not None and fold.attribution is not None:
        updated = replace(
            updated,
            attribution=plan.compare.update(fold.attribution, counts),
            trend=fold.trend.update(counts, t),
            stage_bad=fold.stage_bad + counts.canary_bad,
            stage_trials=fold.stage_trials + counts.canary_trials,
        )
    if metric.type == "kpi" and fold.srm is not None:
        assert metric.denominator
        updated = replace(updated, srm=srm_update(fold.srm, window, metric.denominator))
    return updated


def _history_stats(history: Any) -> VersionStats | None:
    if not isinstance(history, dict) or not isinstance(history.get("baseline"), dict):
        return None
    stats = VersionStats.from_dict(history["baseline"])
    return stats if stats.requests > 0 else None


def _prior(
    metric: MetricSpec, attribution: AttributionState, history: VersionStats | None,
    threshold_ms: float | None,
) -> AttributionState:
    """A fresh test's baseline-rate prior from the baseline's earlier stats (see ``PRIOR_CAP``)."""
    if history is None:
        return attribution
    if metric.type == "errorRate":
        return attribution.with_prior(history.requests, history.errors, PRIOR_CAP)
    if metric.type == "latency" and threshold_ms is not None and history.latency_buckets:
        trials = float(history.latency_buckets[-1][1])
        return attribution.with_prior(trials, float(history.count_above(threshold_ms)), PRIOR_CAP)
    if metric.type == "custom" and metric.name in history.extra:
        return attribution.with_prior(history.requests, history.extra[metric.name], PRIOR_CAP)
    return attribution


def _history_bar(metric: MetricSpec, history: VersionStats | None) -> float | None:
    """The stable version's quantile before the rollout: the bar is frozen at the start, and no
    window of the rollout is spent choosing it."""
    if history is None or not history.latency_buckets:
        return None
    if history.latency_buckets[-1][1] < baseline_needed(metric.quantile):
        return None
    return frozen_bound(history, metric.quantile)


def _initial(plans: list[MetricPlan], carry: dict[str, Any] | None, history: VersionStats | None) -> StageFold:
    metrics = {}
    for plan in plans:
        saved = carry.get(plan.metric.name, {}) if isinstance(carry, dict) else {}
        grid_size = plan.compare.grid.size if plan.compare is not None else 0
        attribution = AttributionState.from_dict(saved.get("attribution"), grid_size) if plan.compare else None
        threshold_ms = saved.get("threshold_ms")
        if attribution is not None and attribution.windows == 0 and attribution.prior_trials == 0:
            if plan.metric.type == "latency" and threshold_ms is None:
                threshold_ms = _history_bar(plan.metric, history)
            attribution = _prior(plan.metric, attribution, history, threshold_ms)
        if attribution is not None and plan.compare is not None:
            # Half of the no-regression evidence is re-earned in every stage (on more traffic, so
            # faster): a canary that degrades as it grows must not ride on an earlier stage's "fine".
            attribution.accept_llr = min(attribution.accept_llr, 0.5 * math.log(1.0 / plan.compare.beta))
        metrics[plan.metric.name] = MetricFold(
            attribution=attribution,
            slo=SloCounts.from_dict(saved.get("slo")),
            threshold_ms=threshold_ms,
            srm=SampleRatioState.from_dict(saved.get("srm")) if plan.metric.type == "kpi" else None,
        )
    return StageFold(metrics=metrics)


def _fold_window(plans: list[MetricPlan], fold: StageFold, window: Window, stage_start: float) -> StageFold:
    if not window.has_data:
        return replace(fold, last_has_data=False)
    assert window.canary is not None
    t = window.end - stage_start
    metrics = {plan.metric.name: _fold_metric(plan, fold.metrics[plan.metric.name], window, t) for plan in plans}
    return StageFold(
        metrics=metrics,
        canary_requests=fold.canary_requests + window.canary.requests,
        canary_errors=fold.canary_errors + window.canary.errors,
        windows_with_data=fold.windows_with_data + 1,
        last_has_data=True,
    )


def carry_of(fold: StageFold) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, metric in fold.metrics.items():
        entry: dict[str, Any] = {"slo": metric.slo.to_dict()}
        if metric.attribution is not None:
            entry["attribution"] = metric.attribution.to_dict()
        if metric.threshold_ms is not None:
            entry["threshold_ms"] = metric.threshold_ms
        if metric.srm is not None:
            entry["srm"] = metric.srm.to_dict()
        out[name] = entry
    return out


# ------------------------------------------------------------------ the judge


@dataclass
class _Memo:
    """Folds of the windows seen so far, so a judge asked once per window does O(1) work per call."""

    key: tuple[Any, ...]
    carry: Any
    windows: list[Window] = field(default_factory=list)
    folds: list[StageFold] = field(default_factory=list)


class SequentialJudge:
    """Anytime-valid, multi-metric judge; see the module docstring for the rules."""

    name = "sequential"

    def __init__(self, analysis: AnalysisSpec):
        self.analysis = analysis
        self.plans = plan_metrics(analysis)
        self.evaluations = plan_evaluations(analysis, *total_weight(analysis))
        self._memo: _Memo | None = None

    # -------------------------------------------------------------- folding

    def fold(self, context: StageContext) -> StageFold:
        carry = context.carry.get(CARRY_KEY) if context.carry else None
        key = (context.stage_index, context.stage_started_at, context.run)
        memo = self._memo
        if memo is None or memo.key != key or memo.carry is not carry:
            history = _history_stats(context.carry.get("history")) if context.carry else None
            memo = self._memo = _Memo(key=key, carry=carry, folds=[_initial(self.plans, carry, history)])
        same = 0
        windows = context.windows
        while same < len(memo.windows) and same < len(windows) and memo.windows[same] is windows[same]:
            same += 1
        del memo.windows[same:]
        del memo.folds[same + 1:]
        for window in windows[same:]:
            memo.folds.append(_fold_window(self.plans, memo.folds[-1], window, context.stage_started_at))
            memo.windows.append(window)
        return memo.folds[-1]

    # -------------------------------------------------------------- judging

    def evaluate(self, context: StageContext) -> Verdict:
        fold = self.fold(context)
        details = self._details(context, fold)
        if fold.windows_with_data == 0:
            return Verdict(Action.HOLD, "no metrics arrived in this stage yet: holding (unknown, not bad)",
                           rule="no-data", details=details)
        priors = _priors(context.carry)
        judged = [self._judge_metric(plan, fold.metrics[plan.metric.name], priors.get(plan.metric.name))
                  for plan in self.plans]
        judged += self._judge_evaluations(context, details)
        results = tuple(j.result for j in judged)
        if not fold.last_has_data:
            # Checked before any rollback: a window without data can only ever hold. (The evidence
            # cannot have changed since the last window with data, which was judged then.)
            return Verdict(Action.HOLD, "the latest window has no data: holding (unknown, not bad)",
                           rule="no-data", metrics=results, details=details)
        rollbacks = [rollback for j in judged for rollback in j.rollbacks]
        if rollbacks:
            margin, culprit, rule, reason = max(rollbacks)
            details.marginNats = margin
            return Verdict(Action.ROLLBACK, reason, rule=rule, culprit=culprit, metrics=results, details=details)
        inconclusive = [j.result.metric for j in judged if j.srm]
        if inconclusive:
            return Verdict(Action.INCONCLUSIVE,
                           f"sample-ratio mismatch on {', '.join(inconclusive)}: visits do not split like "
                           "requests, so the KPI comparison cannot be trusted; ask a human",
                           rule="sample-ratio-mismatch", culprit=inconclusive[0], metrics=results,
                           details=details)
        return self._expand_or_wait(fold, judged, details)

    def _judge_evaluations(self, context: StageContext, details: JudgeDetails) -> list[_MetricJudgement]:
        """The evaluations on this stage's batches (``analysis/evaluation.py``); their state joins the carry."""
        if not self.evaluations:
            return []
        carry = context.carry.get(CARRY_KEY) if context.carry else None
        judgements, state = judge_stage(self.evaluations, carry, context.windows)
        assert details.carry is not None
        details.carry[CARRY_KEY].update(state)
        return [_MetricJudgement(result=j.result, rollbacks=j.rollbacks, decided=j.decided) for j in judgements]

    def _details(self, context: StageContext, fold: StageFold) -> JudgeDetails:
        """The stage's context numbers, and the fold's state for the next stage to carry on from."""
        analysis = self.analysis
        return JudgeDetails(
            judge="sequential", alpha=analysis.alpha, stage=context.stage_index, run=context.run,
            runs=analysis.runs, elapsed=context.elapsed, canaryRequests=fold.canary_requests,
            minSamples=analysis.minSamples, windows=len(context.windows), windowsWithData=fold.windows_with_data,
            carry={CARRY_KEY: carry_of(fold)},
        )

    def _expand_or_wait(self, fold: StageFold, judged: list[_MetricJudgement], details: JudgeDetails) -> Verdict:
        """No rollback: expand when every required metric is decided and nothing rises, else keep observing."""
        analysis = self.analysis
        results = tuple(j.result for j in judged)
        blocking = [plan.blocking for plan in self.plans] + [plan.blocking for plan in self.evaluations]
        undecided = [j.result.metric for j, blocks in zip(judged, blocking, strict=True) if blocks and not j.decided]
        rising = [j.result.metric for j in judged if j.rising]
        enough = fold.canary_requests >= analysis.minSamples or not self.plans  # evaluations only: no live bar
        if enough and not undecided and not rising:
            burn = self._burn_check(fold)
            if burn is not None:
                name, detail = burn
                details.burn = detail
                return Verdict(
                    Action.ROLLBACK,
                    f"{name}: at 100 % the canary would burn the error budget at ≥ "
                    f"{detail.burnRate:.1f}x (limit {detail.limit:g}x)",
                    rule="predicted-burn-rate", culprit=name, metrics=results, details=details,
                )
            return Verdict(Action.EXPAND,
                           f"no regression on any metric after {fold.canary_requests} canary requests",
                           rule="no-regression-decided", metrics=results, details=details)
        waiting = []
        if not enough:
            waiting.append(f"{fold.canary_requests}/{analysis.minSamples} canary requests")
        if undecided:
            waiting.append("undecided: " + ", ".join(undecided))
        if rising:
            waiting.append("rising trend: " + ", ".join(rising))
        return Verdict(Action.CONTINUE, "observing (" + "; ".join(waiting) + ")", rule="undecided",
                       metrics=results, details=details)

    def _burn_check(self, fold: StageFold) -> tuple[str, BurnProjection] | None:
        for plan in self.plans:
            if plan.burn_alpha is None or plan.metric.slo is None:
                continue
            detail = project_burn_rate(
                fold.canary_errors, fold.canary_requests, plan.metric.slo.value, plan.burn_alpha,
                self.analysis.burnRateLimit,
            )
            if detail.fires:
                return plan.metric.name, detail
        return None

    def _judge_metric(self, plan: MetricPlan, fold: MetricFold, prior: MixturePrior | None) -> _MetricJudgement:
        metric = plan.metric
        draft = _MetricJudgement(result=MetricEvidence(metric=metric.name, test="none", action=str(Action.CONTINUE)))
        params = MetricParams(weight=plan.weight, alphaShare=plan.alpha, critical=metric.critical,
                              blocking=plan.blocking)
        summary: list[str] = []
        if plan.compare is not None and fold.attribution is not None:
            test = plan.compare
            if prior is not None and test.min_effect is None and not test.relative:
                test = replace(test, prior=prior)
                params.prior = _prior_evidence(prior)
            params = self._compare(plan, test, fold, fold.attribution, params, draft, summary)
        elif metric.type == "latency" and fold.threshold_ms is None:
            summary.append("waiting for enough baseline requests to freeze the latency bar")
        if plan.gate is not None:
            params.slo = _gate(plan, plan.gate, fold, draft, summary)
        draft.result = draft.result.model_copy(update={"params": params, "summary": "; ".join(summary)})
        return draft

    def _compare(
        self, plan: MetricPlan, test: SequentialErrorTest, fold: MetricFold, state: AttributionState,
        params: MetricParams, draft: _MetricJudgement, summary: list[str],
    ) -> MetricParams:
        """The comparison with the baseline: its numbers into ``draft``, its parameters returned."""
        metric = plan.metric
        outcome = test.outcome(state)
        params = params.merged(test.params()).merged(_outcome_params(outcome))
        params.trendZ = fold.trend.z()
        if metric.type == "latency":
            params.thresholdMs = fold.threshold_ms
            params.frozenInStage = fold.frozen_in_stage
        canary = SideCounts(trials=state.canary_trials, bad=state.canary_bad, badThisStage=fold.stage_bad,
                            trialsThisStage=fold.stage_trials)
        baseline = SideCounts(trials=state.baseline_trials, bad=state.baseline_bad)
        if state.prior_trials:
            baseline.priorTrials, baseline.priorBad = state.prior_trials, state.prior_bad
        if test.relative:
            effect = outcome.ratio - 1.0
            interval = (outcome.ratio_interval[0] - 1.0, outcome.ratio_interval[1] - 1.0)
            params.effectCoverage = 1.0 - 2.0 * test.alpha
        else:
            effect, interval = rate_difference(test, state, outcome.ratio_interval)
            params.effectCoverage = 1.0 - 4.0 * test.alpha
        if metric.type == "kpi":
            draft.decided, _ = non_inferior(test, state)
            params.nonInferiorBar = test.ratio_for(test.tolerance + test.concern, test.baseline_rate(state))
            assert fold.srm is not None
            srm_e = srm_e_value(fold.srm)
            params.srmEValue = srm_e
            params.srmThreshold = 1.0 / self.analysis.alpha
            draft.srm = srm_e >= 1.0 / self.analysis.alpha
        else:
            draft.decided = outcome.accepted
        draft.rising = fold.trend.rising()
        action = Action.CONTINUE
        canary_rate = _rate(metric, state.canary_bad, state.canary_trials)
        baseline_rate = _rate(metric, state.baseline_bad, state.baseline_trials)
        if outcome.rejected:
            action = Action.ROLLBACK
            margin = math.log(outcome.e_value) - math.log(outcome.threshold)
            draft.rollbacks.append((margin, metric.name, "e-value-bonferroni", (
                f"{metric.name}: e-value {outcome.e_value:.3g} ≥ 1/(w·α) = {outcome.threshold:.3g} "
                f"({test.name}); canary {canary_rate} vs baseline {baseline_rate}"
            )))
        elif draft.decided:
            action = Action.EXPAND
        summary.append(
            f"{test.name}: E={outcome.e_value:.3g} (bar {outcome.threshold:.3g}), "
            f"accept {outcome.accept_llr:.2f}/{outcome.accept_threshold:.2f} nats, "
            f"canary {canary_rate} vs baseline {baseline_rate}"
        )
        draft.result = MetricEvidence(
            metric=metric.name, test=test.name, action=str(action), statistic=outcome.e_value,
            threshold=outcome.threshold, canary=canary, baseline=baseline, effect=effect, interval=list(interval),
        )
        return params


@dataclass
class _MetricJudgement:
    """One metric's evidence, and what it says about the stage."""

    result: MetricEvidence
    rollbacks: list[tuple[float, str, str, str]] = field(default_factory=list)  # (margin, metric, rule, reason)
    decided: bool = False
    rising: bool = False
    srm: bool = False


def _gate(plan: MetricPlan, gate: SloGate, fold: MetricFold, draft: _MetricJudgement,
          summary: list[str]) -> SloVerdict:
    """The absolute gate: a confident breach rolls back; a gate alone decides a metric with no comparison."""
    metric = plan.metric
    assert metric.slo is not None
    verdict = gate.judge(fold.slo)
    bounds = f"{format_percent(verdict.lower)}–{format_percent(verdict.upper)}"
    if verdict.breached:
        draft.result = draft.result.model_copy(update={"action": str(Action.ROLLBACK)})
        draft.rollbacks.append((math.inf, metric.name, "slo-breach", (
            f"{metric.name}: canary breaks its SLO {metric.slo.text} with confidence "
            f"(bounds {bounds}, gate {format_percent(verdict.limit)})"
        )))
    if plan.compare is None:
        draft.decided = bool(verdict.met)
    summary.append(
        f"SLO {metric.slo.text}: bounds {bounds}"
        f" → {'breached' if verdict.breached else 'met' if verdict.met else 'undecided'}"
    )
    return verdict


def rate_difference(
    test: SequentialErrorTest, state: AttributionState, ratio_interval: tuple[float, float]
) -> tuple[float, tuple[float, float]]:
    """Canary rate minus baseline rate, with an anytime-valid interval for that difference.

    The difference is ``p_c (1 - 1/psi)`` for the canary's rate ``p_c`` and the rate ratio ``psi``,
    so it is bounded by combining the ratio's confidence sequence (the rollback test's own, so the
    interval excludes 0 whenever the mixture test rolls back) with a Beta-mixture confidence
    sequence for ``p_c`` (prior centred on the effect of concern, fixed by the spec). Each of the
    four one-sided bounds holds at every look with probability 1 - alpha, so the interval covers
    the difference at every look with probability at least 1 - 4 alpha. Unlike ``(psi - 1) *
    baseline rate`` it stays informative when the baseline has seen no bad event at all.
    """
    canary = state.canary_bad / state.canary_trials if state.canary_trials else 0.0
    baseline = state.baseline_bad / state.baseline_trials if state.baseline_trials else 0.0
    low_c, high_c = rate_bounds(max(test.concern, 1e-6), state.canary_bad, state.canary_trials, test.alpha)
    low_psi, high_psi = ratio_interval
    low = (low_c if low_psi >= 1.0 else high_c) * (1.0 - 1.0 / low_psi)
    high = (high_c if high_psi >= 1.0 else low_c) * (1.0 - 1.0 / high_psi)
    return canary - baseline, (low, high)


def _priors(carry: dict[str, Any] | None) -> dict[str, MixturePrior]:
    """The per-metric mixture priors the engine fixed when the rollout began (none: flat mixtures)."""
    read = carry.get("priors") if carry else None
    if not isinstance(read, dict):
        return {}
    metrics = read.get("metrics")
    if not isinstance(metrics, dict):
        return {}
    priors = {name: MixturePrior.from_dict(data) for name, data in metrics.items()}
    return {name: prior for name, prior in priors.items() if prior is not None}


def _prior_evidence(prior: MixturePrior) -> PriorEvidence:
    return PriorEvidence(mean=prior.mean, sd=prior.sd, flat=prior.flat, centreRatio=math.exp(prior.mean),
                         source=prior.source, serviceReleases=prior.service_releases,
                         pooledReleases=prior.pooled_releases)


def _outcome_params(outcome: TestOutcome) -> MetricParams:
    return MetricParams(
        eValue=outcome.e_value,
        acceptLlr=outcome.accept_llr,
        acceptThreshold=outcome.accept_threshold,
        ratio=outcome.ratio,
        ratioInterval=list(outcome.ratio_interval),
        baselineRate=outcome.baseline_rate,
        nullRatio=outcome.null_ratio,
        alternativeRatio=outcome.alternative_ratio,
        concernRatio=outcome.concern_ratio,
        rejected=outcome.rejected,
        accepted=outcome.accepted,
    )


def _rate(metric: MetricSpec, bad: float, trials: float) -> str:
    if trials <= 0:
        return "n/a"
    label = {"errorRate": "errors", "latency": "slow", "kpi": metric.numerator or "hits"}.get(metric.type, "bad")
    return f"{format_percent(bad / trials)} ({bad:g} {label}/{trials:g})"
