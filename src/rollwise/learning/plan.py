"""Plans that follow a change's risk: a pure function of (steps, risk score, thresholds).

A risky change (score ≥ ``high``) takes the careful lane: a smaller first step, every timed bake
doubled, each judged stage run twice, and a person's approval after the first stage. A low-risk one
(score < ``low``) takes the fast lane: only the first and last traffic steps, timed bakes halved
(those of skipped steps dropped).
Anything between keeps the spec's plan. Approval pauses a person wrote into the spec are never
removed. The reason names the score, the threshold it crossed and every change made to the plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import ValidationError

from rollwise.core.evidence import PlanEvidence, RiskFactor
from rollwise.spec.models import CanaryStep, PauseSpec, RolloutSpec

if TYPE_CHECKING:
    from rollwise.learning.risk import RiskAssessment

CAREFUL, STANDARD, FAST = "careful", "standard", "fast"
MIN_BAKE_S = 10.0


@dataclass(frozen=True)
class RiskThresholds:
    high: float = 0.6
    low: float = 0.25


@dataclass(frozen=True)
class PlanChange:
    lane: str
    steps: list[CanaryStep]
    runs: int | None
    reason: str
    changes: list[str]


def describe(step: CanaryStep) -> str:
    if step.setWeight is not None:
        return f"setWeight {step.setWeight}"
    if step.pause is not None:
        return "pause until approved" if step.pause.untilApproved else f"pause {step.pause.duration:g}s"
    return step.kind


def adapt_plan(steps: list[CanaryStep], score: float, thresholds: RiskThresholds = RiskThresholds(),
               runs: int = 1) -> PlanChange:
    """The plan for a change of risk ``score`` (0..1); ``runs`` is the spec's runs per stage."""
    if score >= thresholds.high:
        new_steps, changes = _careful(steps)
        changes.append(f"each stage needs {max(2, runs)} independent runs")
        lane, why = CAREFUL, f"risk {score:.2f} ≥ {thresholds.high:g} (high)"
        return PlanChange(lane, new_steps, max(2, runs), f"{why}: careful lane: " + "; ".join(changes), changes)
    if score < thresholds.low:
        new_steps, changes = _fast(steps)
        why = f"risk {score:.2f} < {thresholds.low:g} (low)"
        return PlanChange(FAST, new_steps, None, f"{why}: fast lane: " + ("; ".join(changes) or "plan already short"),
                          changes)
    between = f"risk {score:.2f} between {thresholds.low:g} and {thresholds.high:g}"
    return PlanChange(STANDARD, list(steps), None, f"{between}: the spec's plan as written", [])


def _careful(steps: list[CanaryStep]) -> tuple[list[CanaryStep], list[str]]:
    out: list[CanaryStep] = []
    changes: list[str] = []
    weights = [i for i, s in enumerate(steps) if s.setWeight is not None and s.setWeight > 0]
    for i, step in enumerate(steps):
        if weights and i == weights[0] and step.setWeight is not None and step.setWeight > 1:
            smaller = max(1, step.setWeight // 4)
            out.append(CanaryStep(setWeight=smaller))
            changes.append(f"starts at {smaller}% instead of {step.setWeight}%")
            out.append(CanaryStep(pause=PauseSpec(duration=_first_bake(steps))))
        if step.pause is not None and step.pause.duration is not None:
            out.append(CanaryStep(pause=PauseSpec(duration=step.pause.duration * 2)))
            changes.append(f"bake {step.pause.duration:g}s → {step.pause.duration * 2:g}s")
            continue
        out.append(step)
        if weights and i == weights[0] and len(weights) > 1:
            out.append(CanaryStep(pause=PauseSpec(untilApproved=True)))
            changes.append(f"a person approves after the {step.setWeight}% stage")
    return out, changes


def _first_bake(steps: list[CanaryStep]) -> float:
    bakes = [s.pause.duration for s in steps if s.pause is not None and s.pause.duration is not None]
    return max(MIN_BAKE_S, 2 * bakes[0]) if bakes else 60.0


def _fast(steps: list[CanaryStep]) -> tuple[list[CanaryStep], list[str]]:
    weights = [i for i, s in enumerate(steps) if s.setWeight is not None and s.setWeight > 0]
    keep = {weights[0], weights[-1]} if weights else set()
    out: list[CanaryStep] = []
    changes: list[str] = []
    for i, step in enumerate(steps):
        if i in weights and i not in keep:
            changes.append(f"skips {describe(step)}")
            continue
        if step.pause is not None and step.pause.duration is not None:
            if len(weights) > 1 and weights[0] < i < weights[-1] and _after_skipped(i, weights, keep):
                changes.append(f"drops {describe(step)}")
                continue
            shorter = max(MIN_BAKE_S, step.pause.duration / 2)
            if shorter < step.pause.duration:
                changes.append(f"bake {step.pause.duration:g}s → {shorter:g}s")
            out.append(CanaryStep(pause=PauseSpec(duration=shorter)))
            continue
        out.append(step)
    return out, changes


def _after_skipped(i: int, weights: list[int], keep: set[int]) -> bool:
    """A bake that belonged to a skipped step (its nearest earlier traffic step was skipped)."""
    before = max(w for w in weights if w < i)
    return before not in keep


def plan_for(spec: RolloutSpec, assessment: RiskAssessment,
             change: dict[str, str]) -> tuple[RolloutSpec, PlanEvidence]:
    """The spec to start (its canary steps fitted to the risk when ``analysis.adaptive.risk`` asks for it)
    and the evidence of the ``plan`` event: score, lane, factors, the steps before and after."""
    canary = spec.strategy.canary
    analysis = canary.analysis if canary is not None else None
    settings = analysis.risk_adaptive if analysis is not None else None
    thresholds = RiskThresholds(settings.riskHigh, settings.riskLow) if settings else RiskThresholds()
    steps = canary.steps if canary is not None else []
    planned = adapt_plan(steps, assessment.score, thresholds, analysis.runs if analysis else 1)
    applied = canary is not None and settings is not None
    factors = [RiskFactor(feature=name, value=_number(assessment.features.get(name)), contribution=round(term, 4))
               for name, term in assessment.factors]
    reason = planned.reason if applied else (f"risk {assessment.score:.2f} ({planned.lane} lane) recorded; "
                                             "the spec's plan kept: analysis.adaptive.risk is not set")
    evidence = PlanEvidence(
        score=round(assessment.score, 4), lane=planned.lane, high=thresholds.high, low=thresholds.low,
        applied=applied, change=change, factors=factors,
        features={k: _number(v) for k, v in assessment.features.items()},
        stepsBefore=[describe(s) for s in steps],
        stepsAfter=[describe(s) for s in (planned.steps if applied else steps)],
        runs=planned.runs if applied else None, trainedOn=assessment.trained_on,
        failuresSeen=assessment.failures_seen, reason=reason,
    )
    if not applied or canary is None:
        return spec, evidence
    data = spec.model_dump(mode="python", exclude_none=True)
    data["strategy"]["canary"]["steps"] = [step.model_dump(mode="python", exclude_none=True) for step in planned.steps]
    if planned.runs and "analysis" in data["strategy"]["canary"]:
        data["strategy"]["canary"]["analysis"]["runs"] = planned.runs
    try:
        return RolloutSpec.model_validate(data), evidence  # the fitted plan passes every rule a written one does
    except ValidationError as exc:
        kept = f"; the spec's plan kept: the fitted one is invalid ({exc.errors()[0]['msg']})"
        return spec, evidence.model_copy(update={"applied": False, "stepsAfter": evidence.stepsBefore,
                                                 "runs": None, "reason": evidence.reason + kept})


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 4)
