"""Plain words for a decision: which metric, which numbers, which rule fired.

Works on the stored evidence (``Verdict.to_evidence()``, as kept in the rollout's events), so
``rollwise explain`` can say why a canary was rolled back long after the fact, without re-running
anything. Every number it prints is in the evidence, so a reader can recompute the decision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from rollwise.core.evidence import Evidence, MetricEvidence, PriorEvidence, decision_of, parse_evidence
from rollwise.core.model import Event, Verdict
from rollwise.core.units import format_percent

RULES = {
    "e-value-bonferroni": "a metric's e-value reached 1/(w·α): with weighted Bonferroni over metrics and "
    "anytime-valid e-values, the chance this happens to a healthy canary is at most α",
    "pass-k-e-value": "an evaluation's pass^k e-value (all k runs of a task passing, paired per task) reached "
    "its share of 1/(w·α): the canary is less consistent than stable, and consistency is gated",
    "slo-breach": "the lower confidence bound of the canary's rate is above the SLO gate",
    "predicted-burn-rate": "at 100 % traffic the canary's error rate (lower confidence bound) would burn "
    "the error budget at or above the burn-rate limit",
    "no-regression-decided": "every required metric ruled out a regression of concern and the stage has "
    "its minimum canary requests",
    "undecided": "not enough evidence either way yet: keep observing",
    "no-data": "no metrics arrived: unknown, not bad — holding",
    "sample-ratio-mismatch": "visits do not split like requests, so the KPI comparison cannot be trusted",
    "kayenta-score": "the Kayenta score (weighted share of passing metrics) crossed a threshold",
    "kayenta-marginal": "the Kayenta score is between the marginal and the pass thresholds",
    "risk-plan": "the change's risk from the learner chose the plan's lane: careful at or above the high "
    "threshold, fast below the low one, the spec's plan between",
    "wave-start": "a region wave started on its regions; with carryForward, it starts higher and bakes shorter "
    "only when every earlier wave was promoted on expand verdicts alone, with no regression, undecided or "
    "blind window, no person forcing it, and at least minRequests canary requests",
    "wave-blackout": "a wave due inside a blackout window (local time of its regions) waits for its end",
    "wave-approval": "a wave with gate: untilApproved waits for a person's approve",
    "wave-baking": "the wave's steps are done; its regions keep the canary, judged, for the bake time",
    "wave-promoted": "the wave's regions now serve the canary fully; the next wave may start",
    "wave-held": "a wave regressed and onFailure is hold: its regions went back to stable, earlier waves kept",
    "wave-rolled-back": "a wave failed: every region already updated went back to stable",
}


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return str(value)
    if isinstance(value, int | float):
        return f"{value:.{digits}g}"
    return str(value)


def _metric_lines(metric: MetricEvidence) -> list[str]:
    params = metric.params
    lines = [f"- {metric.metric} [{metric.test}] → {metric.action}"]
    if metric.statistic is not None and metric.test.startswith("attribution"):
        lines += _attribution_lines(metric)
    elif metric.test == "mann-whitney":
        lines.append(
            f"  {params.classification}: p-value {_num(metric.statistic)} vs "
            f"{_num(metric.threshold)}, shift {_num(metric.effect)}"
        )
    slo = params.slo
    if slo:
        lines.append(
            f"  SLO gate {format_percent(slo.limit)}: canary {_num(slo.bad, 6)} of {_num(slo.trials, 8)}, "
            f"anytime-valid bounds [{format_percent(slo.lower)}, {format_percent(slo.upper)}] → "
            + ("breached" if slo.breached else "met" if slo.met else "undecided")
        )
    if metric.summary and len(lines) == 1:
        lines.append(f"  {metric.summary}")
    return lines


def _attribution_lines(metric: MetricEvidence) -> list[str]:
    params, canary, baseline = metric.params, metric.canary, metric.baseline
    lines = [
        f"  e-value {_num(metric.statistic)} vs threshold 1/(w·α) = {_num(metric.threshold)}"
        f" (weight {_num(params.weight)}, α share {_num(params.alphaShare)}, test α {_num(params.alpha)},"
        f" δ {_num(params.delta)}, minEffect {_num(params.minEffect)})"
    ]
    if canary.trials and canary.bad is not None:
        lines.append(
            f"  canary {_num(canary.bad, 6)} bad of {_num(canary.trials, 8)} "
            f"({format_percent(canary.bad / canary.trials)}); baseline {_num(baseline.bad, 6)} of "
            f"{_num(baseline.trials, 8)}"
            + (f" ({format_percent((baseline.bad or 0) / baseline.trials)})" if baseline.trials else "")
            + f"; bad canary requests this stage: {_num(canary.badThisStage, 6)}"
        )
    if baseline.priorTrials:
        lines.append(
            f"  baseline rate prior: {_num(baseline.priorBad, 6)} bad of {_num(baseline.priorTrials, 8)} "
            "stable requests from before the rollout (shapes the alternative, not the false-rollback bound)"
        )
    if params.prior is not None:
        lines.append(_prior_line(params.prior))
    interval = metric.interval
    if metric.effect is not None and interval:
        relative = params.relative
        fmt = (lambda v: f"{100 * v:+.2f} %") if relative else (lambda v: f"{100 * v:+.3g} pp")
        coverage = params.effectCoverage
        level = f" {100 * coverage:.4g} %" if coverage is not None else ""
        what = "relative change" if relative else "canary rate − baseline rate"
        lines.append(
            f"  effect ({what}) {fmt(metric.effect)}, anytime-valid{level} interval "
            f"[{fmt(interval[0])}, {fmt(interval[1])}]; rate ratio {_num(params.ratio)}"
        )
    lines.append(
        f"  no-regression side: {_num(params.acceptLlr)} of {_num(params.acceptThreshold)} nats"
        f" against a regression of {_num(params.concern)}"
        + (" — decided" if params.accepted else "")
    )
    if params.thresholdMs is not None:
        lines.append(f"  slow = slower than {_num(params.thresholdMs)} ms (the baseline's quantile, frozen)")
    if params.trendZ:
        lines.append(f"  trend z = {_num(params.trendZ)}")
    return lines


def _prior_line(prior: PriorEvidence) -> str:
    """Which mixture the e-value used and whose past releases it was learned from."""
    whose = {"service": "this service's past regressions",
             "pooled": "all services' past regressions (none of this service's yet)",
             "service+pooled": "this service's past regressions, shrunk toward all services'"}
    spread = math.exp(prior.sd) if prior.sd is not None else None
    return (f"  mixture prior: rate ratio ~{_num(prior.centreRatio)} (×/÷ {_num(spread)}), learned from "
            f"{whose.get(prior.source or '', prior.source or 'past releases')}: {prior.serviceReleases or 0} own "
            f"of {prior.pooledReleases or 0} in all, each weighted by how much it measured (a test that stopped early "
            f"reads high); {_num(prior.flat)} of the weight kept flat. Fixed "
            "before the rollout began, so it shapes speed, not the false-rollback bound")


def explain(evidence: Evidence | Mapping[str, Any], action: str | None = None, reason: str | None = None) -> str:
    """A short, plain-text account of a verdict from its evidence (typed, or as stored)."""
    evidence = parse_evidence(evidence)
    rule = evidence.rule or "?"
    head = f"Decision: {action}" if action else "Decision"
    if reason:
        head += f" — {reason}"
    lines = [head, f"Rule: {rule}: {RULES.get(rule, 'see the metric details')}"]
    if evidence.culprit:
        lines.append(f"Culprit: {evidence.culprit}")
    context = _context(evidence)
    if context:
        lines.append("Context: " + ", ".join(context))
    burn = evidence.burn
    if burn:
        lines.append(
            f"Burn projection: canary {burn.errors} errors of {burn.requests}, lower bound "
            f"{format_percent(burn.lower)} = {burn.burnRate:.1f}x the {format_percent(burn.budget or 0.0)} "
            f"budget (limit {burn.limit:g}x)"
        )
    if evidence.metrics:
        lines.append("Metrics:")
        for metric in evidence.metrics:
            lines.extend(_metric_lines(metric))
    return "\n".join(lines)


def _context(evidence: Evidence) -> list[str]:
    context = []
    if evidence.alpha is not None:
        context.append(f"α = {_num(evidence.alpha)}")
    if evidence.stage is not None:
        context.append(f"stage {evidence.stage}")
    if evidence.run is not None:
        context.append(f"run {evidence.run}/{evidence.runs if evidence.runs is not None else 1}")
    if evidence.canaryRequests is not None:
        context.append(f"{evidence.canaryRequests} canary requests (minimum {evidence.minSamples})")
    if evidence.score is not None:
        context.append(f"score {_num(evidence.score)} (pass {evidence.passScore}, "
                       f"marginal {evidence.marginalScore})")
    return context


def explain_verdict(verdict: Verdict) -> str:
    return explain(verdict.evidence, action=str(verdict.action), reason=verdict.reason)


def explain_decision(event: Event) -> str:
    """A recorded decision event in plain words: what ``rollwise explain NAME`` prints."""
    from datetime import UTC, datetime

    decision = decision_of(event.data)
    when = datetime.fromtimestamp(event.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    weight = decision.weight
    where = f"stage {decision.stage}" + (f" at {weight:g}% canary traffic" if weight is not None else "")
    index = decision.index if decision.index is not None else "?"
    header = f"{event.rollout} · decision #{index} · {when} · {where}"
    text = explain(decision.evidence, action=decision.action, reason=event.message)
    if decision.metrics_error:
        text += "\n" + _backend_failed(decision.metrics_error)
    return header + "\n" + text


def _backend_failed(error: str) -> str:
    return (f"Metrics backend error: {error}\n  The backend could not be read, so nothing is known about this "
            "window: it is not \"no data\" (a backend that answered with nothing) and not counted as bad. "
            "The rollout holds until the backend answers, up to analysis.noDataLimit.")


def explain_plan(event: Event) -> str:
    """A ``plan`` event in plain words: the change's risk, what drove it, and what it did to the plan."""
    plan = parse_evidence(event.data.get("evidence")).plan
    if plan is None:
        return f"Plan: {event.message}"
    change = plan.change
    lines = [f"Plan: {plan.lane} lane — {plan.reason}",
             f"Rule: risk-plan — {RULES['risk-plan']}",
             f"Change: {change.get('repo', '?')} {change.get('from', '?')}..{change.get('to', '?')}; "
             f"learner fitted on {plan.trainedOn} past changes ({plan.failuresSeen} failing)"]
    if plan.factors:
        lines.append("Drivers: " + ", ".join(f"{f.feature}={_num(f.value)} ({f.contribution:+.2f})"
                                             for f in plan.factors))
    lines.append("Steps: " + " → ".join(plan.stepsBefore) + (
        "\n   now: " + " → ".join(plan.stepsAfter) if plan.stepsAfter != plan.stepsBefore else " (unchanged)"))
    return "\n".join(lines)


def explain_waves(events: list[Event]) -> str | None:
    """The run's region-wave events in plain words, with the evidence a carry-forward rested on."""
    waves = [(e, parse_evidence(e.data.get("evidence"))) for e in events if e.type == "wave"]
    if not waves:
        return None
    from datetime import UTC, datetime

    lines = ["Waves:"]
    for event, evidence in waves:
        when = datetime.fromtimestamp(event.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        lines.append(f"  {when} {event.message}")
        wave = evidence.wave
        if wave is not None and wave.earlier and wave.action == "start" and wave.carriedForward is not None:
            for summary in wave.earlier:
                verdicts = ", ".join(f"{n} {a}" for a, n in sorted(summary.verdicts.items())) or "no verdicts"
                lines.append(f"      evidence: wave {summary.wave!r} ({', '.join(summary.regions)}) "
                             f"{summary.status}: {verdicts}; {summary.canaryRequests} canary requests, "
                             f"{summary.canaryErrors} errors; {'clean' if summary.clean else 'not clean'}")
    rules = sorted({evidence.rule for _, evidence in waves if evidence.rule in RULES})
    lines.extend(f"Rule: {rule} — {RULES[rule]}" for rule in rules)
    return "\n".join(lines)


def explain_route(events: list[Event]) -> str | None:
    """The data plane's current refusal of the desired route in plain words; None when it follows."""
    from datetime import UTC, datetime

    latest = next((e for e in reversed(events) if e.type in ("route-error", "route-recovered")), None)
    if latest is None or latest.type != "route-error":
        return None
    when = datetime.fromtimestamp(latest.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (f"{latest.rollout} · the data plane refuses route revision {latest.data.get('revision')} since {when}:\n"
            f"  {latest.data.get('error')}\n  The previous route still serves; every tick retries this one and the "
            "rollout decides nothing until the data plane follows it.")


def explain_metrics(events: list[Event]) -> str | None:
    """The metrics backend's current failure in plain words, from the event log; None when it answers."""
    from datetime import UTC, datetime

    latest = next((e for e in reversed(events) if e.type in ("metrics-error", "metrics-recovered")
                   and e.data.get("scope") != "history"), None)
    if latest is None or latest.type != "metrics-error":
        return None
    when = datetime.fromtimestamp(latest.at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{latest.rollout} · metrics backend failing since {when}\n" + _backend_failed(str(latest.data.get("error")))
